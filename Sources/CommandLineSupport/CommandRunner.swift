public import ArgumentParser
import Foundation
import InputText
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
            return report(error, of: Command.self, name: name, known: known)
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
            return report(error, of: Command.self, name: name, known: known)
        }
    }

    /// Reports `error` the way every command does and returns the exit code: help and version
    /// on stdout with 0; a known error with its own code; any other in one line with 2.
    static func report<Command: ParsableCommand>(
        _ error: any Error, of command: Command.Type, name: String, known: (any Error) -> (message: String, code: Int32)?
    ) -> Int32 {
        if let (message, code) = known(error) {
            FileHandle.standardError.write(Data("\(name): \(InputText.printable(message))\n".utf8))
            return code
        }
        if Command.exitCode(for: error) == .success {
            print(Command.fullMessage(for: error))
            return 0
        }
        if let exit = error as? ExitCode { return exit.rawValue }
        FileHandle.standardError.write(Data("\(name): \(InputText.printable(oneLine(Command.message(for: error))))\n".utf8))
        return 2
    }

    /// A parser message on one line: a list of choices on the lines after the first is kept,
    /// joined with commas ("... one of the following: 'trace', 'debug', ...").
    static func oneLine(_ message: String) -> String {
        let lines = message.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let first = lines.first else { return "invalid arguments" }
        let choices = lines.dropFirst().map { $0.hasPrefix("- ") ? String($0.dropFirst(2)) : $0 }
        return choices.isEmpty ? first : first + " " + choices.joined(separator: ", ")
    }
}
