import Foundation
import NestorPKI
import Protos
import Testing
import Wire
import WireCodec

/// Who may connect, and what they may send: each refusal against a real server process,
/// each with a clear line in the server's log.
@Suite(.serialized)
struct MutualTLSTests {
    @Test func refusesEveryCredentialThatIsNotAClusterIdentity() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let server = try ServerProcess(pki: pki)
        defer { server.stop() }

        // No client certificate.
        do {
            let client = try await RawClient.connect(port: server.port, caPEM: pki.caPEM, certificate: nil)
            try? await client.send(Bytes.preamble())
            #expect(await client.wait { $0.closed })
            #expect(client.frames.isEmpty)
            #expect(await server.waitForLog("refused connection: TLS handshake failed: the peer presented no certificate"))
        }

        // A certificate from another CA.
        do {
            let other = try TestPKI()
            defer { other.remove() }
            let stranger = try other.tls(TestPKI.admin)
            let foreign = TLSIdentity(certificatePEM: stranger.certificatePEM, privateKeyPEM: stranger.privateKeyPEM, caPEM: pki.caPEM)
            await #expect(throws: WireConnectionError.self) {
                _ = try await WireClient.connect(host: "127.0.0.1", port: server.port, tls: foreign, server: .identity(TestPKI.server))
            }
            #expect(await server.waitForLog("nestor://admin/ops was not issued by this cluster's CA"))
        }

        // An expired certificate.
        do {
            let ca = try pki.directory.loadCA()
            let expired = try ClusterPKI.issue(CertificateRequest(identity: PeerIdentity(role: .admin, name: "old"), days: 1), ca: ca,
                                               validFrom: Date().addingTimeInterval(-3 * 86_400))
            let tls = TLSIdentity(certificatePEM: expired.certificatePEM, privateKeyPEM: expired.privateKeyPEM, caPEM: pki.caPEM)
            await #expect(throws: WireConnectionError.self) {
                _ = try await WireClient.connect(host: "127.0.0.1", port: server.port, tls: tls, server: .identity(TestPKI.server))
            }
            #expect(await server.waitForLog("nestor://admin/old expired at"))
        }

        // A certificate of this CA without a Nestor URI SAN, and one with two.
        do {
            let anonymous = try pki.credential(uris: ["https://example.com/x"], commonName: "anonymous")
            let tls = TLSIdentity(certificatePEM: anonymous.certificatePEM, privateKeyPEM: anonymous.privateKeyPEM, caPEM: pki.caPEM)
            await #expect(throws: WireConnectionError.self) {
                _ = try await WireClient.connect(host: "127.0.0.1", port: server.port, tls: tls, server: .identity(TestPKI.server))
            }
            #expect(await server.waitForLog("certificate 'CN=anonymous' https://example.com/x carries no nestor:// URI SAN"))

            let twofaced = try pki.credential(uris: ["nestor://admin/a", "nestor://tenant/b"], commonName: "twofaced")
            let both = TLSIdentity(certificatePEM: twofaced.certificatePEM, privateKeyPEM: twofaced.privateKeyPEM, caPEM: pki.caPEM)
            await #expect(throws: WireConnectionError.self) {
                _ = try await WireClient.connect(host: "127.0.0.1", port: server.port, tls: both, server: .identity(TestPKI.server))
            }
            #expect(await server.waitForLog("carries 2 Nestor identities"))
        }

        // TLS 1.2 is refused.
        do {
            let credential = try pki.directory.load(TestPKI.admin)
            let client = try await RawClient.connect(port: server.port, caPEM: pki.caPEM, certificate: credential, maximumTLSVersion: .tlsv12)
            try? await client.send(Bytes.preamble())
            #expect(await client.wait { $0.closed })
            #expect(!client.snapshot.handshaken)
            #expect(await server.waitForLog("the peer does not speak TLS 1.3"))
        }

        // A tenant calling an admin-only request: permissionDenied, logged with its identity;
        // the connection stays usable.
        do {
            let tenant = try await WireClient.connect(host: "127.0.0.1", port: server.port, tls: try pki.tls(TestPKI.tenant), server: .identity(TestPKI.server))
            #expect(tenant.peer == TestPKI.server)
            let request = CreateTenantRequest(name: "evil", quota: TenantQuota(maxCores: 1, maxMemoryBytes: 1, maxDiskBytes: 1))
            do {
                _ = try await tenant.call(request, expecting: TenantResponse.self)
                Issue.record("a tenant created a tenant")
            } catch let failure as WireFailure {
                #expect(failure.code == .permissionDenied)
                #expect(failure.message.contains("role tenant may not send CreateTenantRequest; allowed: admin"))
            }
            #expect(await server.waitForLog("permission denied: nestor://tenant/acme (role tenant) may not send CreateTenantRequest (type 16); allowed roles: admin"))
            let echo = try await tenant.call(EchoRequest(payload: [1, 2]), expecting: EchoResponse.self)
            #expect(echo.payload == [1, 2])
            await tenant.close()
        }

        // The server, too, must be a cluster identity: a client refuses a server of another CA.
        #expect(server.isRunning)
    }

    @Test func aClientRefusesAServerFromAnotherCluster() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let other = try TestPKI()
        defer { other.remove() }
        let server = try ServerProcess(pki: other)
        defer { server.stop() }
        do {
            _ = try await WireClient.connect(host: "127.0.0.1", port: server.port, tls: try pki.tls(TestPKI.admin), server: .identity(TestPKI.server))
            Issue.record("connected to a server of another CA")
        } catch let error as WireConnectionError {
            #expect("\(error)".contains("was not issued by this cluster's CA"))
        }
    }
}
