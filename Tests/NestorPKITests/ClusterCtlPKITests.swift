import Foundation
import Testing

/// `clusterctl pki` as a user runs it: a real process, real files.
struct ClusterCtlPKITests {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static var executable: URL {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("clusterctl").path), directory.path != "/" {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("clusterctl")
    }

    func run(_ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test func initIssueAndShow() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nestor-ctl-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let created = try run(["pki", "init", "--dir", dir])
        #expect(created.status == 0)
        #expect(created.stdout.contains("created the cluster CA"))
        let again = try run(["pki", "init", "--dir", dir])
        #expect(again.status == 2)
        #expect(again.stderr == "clusterctl: \(dir) already holds a CA (ca.pem); a new CA would orphan every certificate it issued\n")

        let issued = try run(["pki", "issue", "--dir", dir, "--role", "agent", "--name", "blade-7", "--dns", "blade7.lab", "--ip", "127.0.0.1", "--days", "30"])
        #expect(issued.status == 0)
        #expect(issued.stdout.contains("issued nestor://agent/blade-7"))
        let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/agent-blade-7-key.pem")
        #expect(attributes[.posixPermissions] as? Int == 0o600)
        let shown = try run(["pki", "show", dir + "/agent-blade-7.pem"])
        #expect(shown.status == 0)
        #expect(shown.stdout.contains("identity:  nestor://agent/blade-7"))
        #expect(shown.stdout.contains("dns:       blade7.lab"))
        #expect(shown.stdout.contains("ip:        127.0.0.1"))
        #expect(shown.stdout.contains("status:    valid"))

        let exists = try run(["pki", "issue", "--dir", dir, "--role", "agent", "--name", "blade-7"])
        #expect(exists.status == 2)
        #expect(exists.stderr.contains("pass --force to replace it"))
        #expect(try run(["pki", "issue", "--dir", dir, "--role", "agent", "--name", "blade-7", "--force"]).status == 0)
    }

    @Test func badInputIsOneLineAndExitCodeTwo() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nestor-ctl-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try run(["pki", "init", "--dir", dir])
        for (arguments, message) in [
            (["pki", "issue", "--dir", dir, "--role", "boss", "--name", "x"], "--role 'boss' is not one of controller, agent, admin, tenant"),
            (["pki", "issue", "--dir", dir, "--role", "admin", "--name", "Bad Name"], "--name 'Bad Name' must be 1 to 63 characters"),
            (["pki", "issue", "--dir", dir, "--role", "admin", "--name", "ops", "--ip", "1.2.3"], "--ip '1.2.3' is not an IPv4 or IPv6 address"),
            (["pki", "issue", "--dir", dir, "--role", "admin", "--name", "ops", "--days", "0"], "--days 0 is not between 1 and 36500"),
            (["pki", "issue", "--dir", dir + "/none", "--role", "admin", "--name", "ops"], "create it with: clusterctl pki init --dir"),
            (["pki", "issue", "--dir", dir, "--role", "admin"], "Missing expected argument '--name <name>'"),
            (["pki", "show", dir + "/missing.pem"], "cannot read"),
        ] {
            let result = try run(arguments)
            #expect(result.status == 2, "\(arguments)")
            #expect(result.stderr.contains(message), "\(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1)
        }
    }
}
