/// The qopt release, printed by `qopt --version` and recorded in the manifest of every
/// directory qopt writes (so a later run knows the directory is its own to replace).
public enum QoptVersion {
  public static let current = "0.1.0"
}
