import ArgumentParser
import QoptIR
import QoptRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// The `qopt` command: LLVM-`opt`-style flags (single dash), subcommands for the other jobs.
struct Qopt: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "qopt",
    abstract: "Quantize LLM weights with pipelines of IR passes.",
    usage: """
      qopt [-passes=PIPELINE] [<options>] IN [-o OUT]
        qopt import|eval ...
      """,
    discussion: """
      IN:  an .ir file (with its .safetensors sidecar), - for standard input,
           a .gguf file, or a Hugging Face or compressed-tensors checkpoint
           directory.
      OUT: NAME.ir (IR + sidecar) or NAME.gguf; a directory with
           -emit=compressed-tensors or -emit=safetensors (an existing one is
           replaced only if empty or written by qopt; -force: any).

      qopt IN                                   parse, verify and print IN (weights elided)
      qopt -passes=PIPELINE IN -o out.ir        run a pipeline, write out.ir + out.safetensors
      qopt -print-passes                        list every pass with its options and defaults
      qopt --version                            print the version

      Exit status: 0 success, 1 an error in the input or a pass (with a located message),
      2 a usage error.
      """,
    subcommands: QoptSubcommands.all,
    defaultSubcommand: OptCommand.self,
    helpNames: [.customLong("help", withSingleDash: true), .short, .long])
}

@main
enum Main {
  static func main() {
    BLAS.startQuietly()  // workers started again by the first threaded product, sleeping when idle
    let args = CommandLine.arguments.dropFirst()
    switch CommandLineConventions.early(Array(args), stdinIsTerminal: isatty(0) != 0) {
    case .version:
      print(CommandLineConventions.versionLine)
      exit(0)
    case .usage:
      print(Qopt.helpMessage() + "\n" + OptCommand.helpMessage())
      exit(0)
    case .parse: break
    }
    if let first = args.first, ["-help", "--help", "-h"].contains(first), args.count == 1 {
      // The default command's flags are what users type most: show them with the overview.
      print(Qopt.helpMessage() + "\n" + OptCommand.helpMessage())
      exit(0)
    }
    do {
      var command = try Qopt.parseAsRoot()
      try command.run()
    } catch let error as any DiagnosticError {
      stderrWrite(CommandLineConventions.render(error) + "\n")
      exit(1)
    } catch let error as ExitCode {
      exit(error.rawValue)
    } catch {
      let code = Qopt.exitCode(for: error)
      let message = Qopt.fullMessage(for: error)
      if code == .success {
        print(message)
        exit(0)
      }
      // ArgumentParser's parse and validation errors are usage errors (exit 2, with the usage
      // line); anything else a command throws is an error in the input (exit 1).
      if code == .validationFailure {
        stderrWrite(CommandLineConventions.usageError(message, args: Array(args)) + "\n")
        exit(2)
      }
      stderrWrite("error: \(message)\n")
      exit(1)
    }
  }
}

/// Writes to standard error unbuffered, so messages interleave correctly with stdout.
func stderrWrite(_ s: String) {
  var bytes = Array(s.utf8)
  var done = 0
  while done < bytes.count {
    let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + done, $0.count - done) }  // safe: non-empty
    if n <= 0 { return }
    done += n
  }
}
