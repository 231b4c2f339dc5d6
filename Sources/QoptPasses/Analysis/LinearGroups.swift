import QoptIR

/// The module's fused linear sets (`Module.linearInputGroups()`) as a cached analysis.
public enum LinearGroupsAnalysis: Analysis {
  public static let name = "linear-groups"

  public static func compute(_ module: Module, _ analyses: AnalysisManager) throws -> [LinearInputGroup] {
    module.linearInputGroups()
  }
}
