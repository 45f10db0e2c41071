public import ArgumentParser
import Foundation
import Supervision

/// How Nestor's executables run their commands: an error in the input is one line on stderr,
/// `NAME: message`, with exit code 2 (never a trace); `--help` and `--version` exit 0. Every
/// command runs under `SignalPolicy` (a peer that goes away is an error, never a signal).
public enum CommandRunner {
    /// Parses the arguments as `Command`, runs it and returns the exit code. `known` maps the
    /// command's own error types to their message and exit code.
    public static func run<Command: ParsableCommand>(
        _ command: Command.Type, known: (any Error) -> (message: String, code: Int32)? = { _ in nil }
    ) -> Int32 {
        let name = Command.configuration.commandName ?? "command"
        SignalPolicy.installForSupervisor()
        do {
            var parsed = try Command.parseAsRoot()
            try parsed.run()
            return 0
        } catch {
            if let (message, code) = known(error) {
                FileHandle.standardError.write(Data("\(name): \(message)\n".utf8))
                return code
            }
            if Command.exitCode(for: error) == .success {
                print(Command.fullMessage(for: error))
                return 0
            }
            if let exit = error as? ExitCode { return exit.rawValue }
            let line = Command.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
            FileHandle.standardError.write(Data("\(name): \(line)\n".utf8))
            return 2
        }
    }

    /// `run` for commands that may be asynchronous (`AsyncParsableCommand`).
    public static func runAsync<Command: ParsableCommand>(
        _ command: Command.Type, known: @Sendable (any Error) -> (message: String, code: Int32)? = { _ in nil }
    ) async -> Int32 {
        let name = Command.configuration.commandName ?? "command"
        SignalPolicy.installForSupervisor()
        do {
            var parsed = try Command.parseAsRoot()
            if var asyncCommand = parsed as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try parsed.run()
            }
            return 0
        } catch {
            if let (message, code) = known(error) {
                FileHandle.standardError.write(Data("\(name): \(message)\n".utf8))
                return code
            }
            if Command.exitCode(for: error) == .success {
                print(Command.fullMessage(for: error))
                return 0
            }
            if let exit = error as? ExitCode { return exit.rawValue }
            let line = Command.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
            FileHandle.standardError.write(Data("\(name): \(line)\n".utf8))
            return 2
        }
    }
}
