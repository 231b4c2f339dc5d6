import QoptIR

#if canImport(Glibc)
  import Glibc
#endif

/// Where block-wise passes (`autoround`) keep the work of their finished blocks when the
/// pipeline names no `checkpoint-dir`, and who hears about each one.
///
/// The CLI sets `root` to `OUT.qopt-resume` beside `-o OUT`: each block-wise pass of the
/// pipeline keeps its checkpoint in `root/NAME` (`root/NAME.2` for a second one), so an
/// interrupted run resumes when the same command runs again, and the CLI removes `root` once
/// the output is written. Without `root` a pass checkpoints only where its options say.
public struct BlockCheckpoints: Sendable {
  public var root: String?
  /// Called after a pass saved a block, and once when it resumed from a checkpoint (the CLI
  /// precomputes its interrupt message from it).
  public var onSaved: @Sendable (BlockCheckpointProgress) -> Void

  public init(
    root: String? = nil, onSaved: @escaping @Sendable (BlockCheckpointProgress) -> Void = { _ in }
  ) {
    self.root = root
    self.onSaved = onSaved
  }

  /// The default checkpoint directory of the `occurrence`-th (from 1) run of pass `name`.
  func directory(pass name: String, occurrence: Int) -> String? {
    root.map { $0 + "/" + name + (occurrence > 1 ? ".\(occurrence)" : "") }
  }

  /// Deletes the checkpoints under `root` file by file, only the names a checkpoint holds
  /// (`AutoRoundCheckpoint.isOwnFile`, `FinetuneCheckpoint.isOwnFile`), then the emptied directories. Returns the first file
  /// it left because qopt did not write it (the directory stays then), or nil when `root` is
  /// gone (or never existed).
  public static func remove(root: String) -> String? {
    guard fileExists(root) else { return nil }
    var foreign: String?
    for name in directoryEntries(root) {
      let sub = root + "/" + name
      guard isDirectory(sub) else {
        foreign = foreign ?? sub
        continue
      }
      for file in directoryEntries(sub) {
        if AutoRoundCheckpoint.isOwnFile(file) || FinetuneCheckpoint.isOwnFile(file) {
          unlink(sub + "/" + file)
        } else {
          foreign = foreign ?? sub + "/" + file
        }
      }
      rmdir(sub)
    }
    rmdir(root)
    return fileExists(root) ? (foreign ?? root) : nil
  }
}

/// How far a block-wise pass got: `done` of `total` blocks are kept in `directory`.
public struct BlockCheckpointProgress: Sendable {
  public var pass: String
  public var directory: String
  public var done: Int
  public var total: Int
  /// Whether `directory` is the default one (under `BlockCheckpoints.root`).
  public var isDefault: Bool
  /// What `done` and `total` count: "blocks" (`autoround`) or "steps" (`finetune`).
  public var unit = "blocks"
}
