import Foundation
import NestorPKI
import Testing
import WireCodec

/// Clients check whom they talk to: a server holding a certificate of the cluster CA that is
/// not a controller's (a tenant's, an admin's, an agent's) is refused by clusterctl and by
/// blade-agent during the handshake, with a message naming what it presented; and the
/// controller refuses to start with such a certificate.
extension EndToEnd { @Suite struct ServerIdentityTests {
    /// `wire-bench serve` as `identity`: a real mutual-TLS server of this cluster's CA.
    final class Impostor {
        let process = Process()
        let port: Int

        init(_ cluster: ClusterHarness, identity: String) throws {
            process.executableURL = URL(fileURLWithPath: ClusterHarness.executable("wire-bench"))
            process.arguments = ["serve", "--pki", cluster.pki.path, "--identity", identity]
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            let text = ClusterHarness.firstLine(of: out)
            guard text.hasPrefix("listening on "), let port = Int(text.dropFirst("listening on ".count).trimmingCharacters(in: .whitespacesAndNewlines)) else {
                process.terminate()
                throw HarnessFailure("wire-bench serve as \(identity) did not start: '\(text)'")
            }
            self.port = port
        }

        deinit { if process.isRunning { process.terminate(); process.waitUntilExit() } }
    }

    static let impostors: [(identity: String, presented: String)] = [
        ("tenant/globex", "nestor://tenant/globex, a tenant's certificate, not a controller's"),
        ("admin/ops", "nestor://admin/ops, an admin's certificate, not a controller's"),
        ("agent/blade-2", "nestor://agent/blade-2, an agent's certificate, not a controller's"),
    ]

    @Test func clientsRefuseAServerThatIsNotAController() async throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        try cluster.issue("agent/blade-2")
        for (index, impostor) in Self.impostors.enumerated() {
            let server = try Impostor(cluster, identity: impostor.identity)
            let listed = try await cluster.ctl("tenant/acme", ["tenant", "list"], port: server.port)
            #expect(listed.status == 1, "clusterctl against \(impostor.identity): \(listed.stderr)")
            #expect(listed.stderr.contains("the server at 127.0.0.1:\(server.port) presented \(impostor.presented)"), "\(listed.stderr)")
            #expect(!listed.stderr.contains("/.build/") && !listed.stderr.contains("BoringSSL"), "\(listed.stderr)")

            let blade = "blade-\(10 + index)"
            try cluster.startAgent(blade, chassis: "chassis-1", controllerPort: server.port)
            try await cluster.eventually("the agent refuses \(impostor.identity)") {
                cluster.agentLog(blade).contains("the server presented \(impostor.presented)")
            }
            cluster.kill(agent: blade)
        }
    }

    /// A certificate the controller does not accept gets a sentence, not BoringSSL's text.
    @Test func aRefusedCertificateIsSaidInASentence() async throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        try cluster.startController()
        let other = PKIDirectory(path: cluster.directory + "/other-pki")
        _ = try other.initialize()
        _ = try other.issue(CertificateRequest(identity: PeerIdentity(role: .admin, name: "ops")))
        let listed = try await cluster.ctl("admin/ops", ["tenant", "list", "--cert", other.path + "/admin-ops.pem",
                                                         "--key", other.path + "/admin-ops-key.pem", "--ca", cluster.pki.path + "/ca.pem"])
        #expect(listed.status == 1)
        #expect(listed.stderr.contains("the server at 127.0.0.1:\(cluster.port) did not accept this certificate (TLS alert: "), "\(listed.stderr)")
        #expect(!listed.stderr.contains(".build/") && !listed.stderr.contains("OPENSSL_internal"), "\(listed.stderr)")
    }

    @Test(arguments: ["tenant/acme", "admin/ops", "agent/blade-1"])
    func theControllerRefusesToStartWithAnotherRolesCertificate(_ identity: String) async throws {
        let cluster = try ClusterHarness()
        defer { cluster.stop() }
        try cluster.issue("agent/blade-1")
        let file = identity.replacingOccurrences(of: "/", with: "-")
        let (status, stderr) = try ClusterHarness.runToEnd("cluster-controller", [
            "run", "--listen", "127.0.0.1:0", "--data-dir", cluster.directory + "/data",
            "--cert", cluster.pki.path + "/\(file).pem", "--key", cluster.pki.path + "/\(file)-key.pem", "--ca", cluster.pki.path + "/ca.pem"])
        #expect(status == 2, "\(stderr)")
        let role = String(identity.split(separator: "/")[0])
        #expect(stderr.contains("the controller cannot start with these credentials: the certificate is nestor://\(identity), a\(role == "tenant" ? "" : "n") \(role)'s certificate, not a controller's"), "\(stderr)")
    }
} }
