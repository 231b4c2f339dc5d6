import ArgumentParser

/// Every subcommand, one line each; `OptCommand` (the LLVM `opt` job) is the default.
enum QoptSubcommands {
  static let all: [any ParsableCommand.Type] = [
    OptCommand.self,
    ImportCommand.self,
    EvalCommand.self,
    GenerateCommand.self,
    ImatrixCommand.self,
    PlanCommand.self,
    ShardCommand.self,
    CacheCommand.self,
    UnitCommand.self,
    MergeCommand.self,
    SlurmCommand.self,
  ]
}
