import Foundation

/// Runs the grpc-swift 2 peer kept in its own package (bench/peers/grpc), building it in
/// release mode when its executable is missing, and reads its figures.
public enum GRPCPeer {
    public static func run(plan: BenchPlan, credentials: BenchCredentials) throws -> BenchFigures {
        let package = try packagePath()
        let executable = (package as NSString).appendingPathComponent(".build/release/grpc-peer")
        if !FileManager.default.isExecutableFile(atPath: executable) {
            FileHandle.standardError.write(Data("wire-bench: building the grpc-swift peer in \(package) (once)...\n".utf8))
            let status = try launch("/usr/bin/env", ["swift", "build", "-c", "release", "--package-path", package], capture: false).status
            guard status == 0 else { throw BenchError("building the grpc-swift peer failed (swift build exit \(status))") }
        }
        let result = try launch(executable, [
            "--pki", credentials.directory.path,
            "--seconds", String(plan.seconds), "--payload-bytes", String(plan.payloadBytes),
            "--concurrency", String(plan.concurrency), "--bulk-bytes", String(plan.bulkBytes),
            "--chunk-bytes", String(plan.chunkBytes), "--warmup", String(plan.warmup),
        ], capture: true)
        guard result.status == 0 else { throw BenchError("the grpc-swift peer failed (exit \(result.status))") }
        guard let line = result.output.split(separator: "\n").last,
              let figures = try? JSONDecoder().decode(BenchFigures.self, from: Data(line.utf8)) else {
            throw BenchError("the grpc-swift peer printed no figures: \(result.output)")
        }
        return figures
    }

    /// bench/peers/grpc, found from the working directory or from this executable's location.
    static func packagePath() throws -> String {
        var candidates = [FileManager.default.currentDirectoryPath]
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        while directory.path != "/" {
            candidates.append(directory.path)
            directory.deleteLastPathComponent()
        }
        for candidate in candidates {
            let path = (candidate as NSString).appendingPathComponent("bench/peers/grpc")
            if FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("Package.swift")) { return path }
        }
        throw BenchError("cannot find bench/peers/grpc: run wire-bench from the repository")
    }

    static func launch(_ executable: String, _ arguments: [String], capture: Bool) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        // A build's output goes to stderr, so that stdout carries only the figures.
        process.standardOutput = capture ? pipe : FileHandle.standardError
        try process.run()
        let output = capture ? String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) : ""
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}
