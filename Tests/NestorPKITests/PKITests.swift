import Foundation
import NestorPKI
import Testing
import WireCodec
import SwiftASN1
import X509

extension Certificate {
    func derBytes() throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(self)
        return serializer.serializedBytes
    }
}

struct PKITests {
    func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("nestor-pki-\(UUID().uuidString)").path
    }

    func mode(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? -1
    }

    @Test func initAndIssueWriteKeysPrivatelyAndRefuseToOverwrite() throws {
        let directory = PKIDirectory(path: temporaryDirectory())
        defer { try? FileManager.default.removeItem(atPath: directory.path) }
        try directory.initialize()
        #expect(mode(directory.caKeyPath) == 0o600)
        #expect(mode(directory.path) == 0o700)
        #expect(throws: PKIError.self) { try directory.initialize() }

        let identity = PeerIdentity(role: .agent, name: "blade-1")
        try directory.issue(CertificateRequest(identity: identity, dnsNames: ["blade1.example"], ipAddresses: ["10.1.2.3", "fd00::1"]))
        #expect(mode(directory.keyPath(for: identity)) == 0o600)
        let error = #expect(throws: PKIError.self) { try directory.issue(CertificateRequest(identity: identity)) }
        #expect(error?.kind == .exists)
        let before = try directory.load(identity)
        try directory.issue(CertificateRequest(identity: identity), overwrite: true)
        #expect(try directory.load(identity) != before)
    }

    @Test func certificatesCarryTheIdentityAndUsages() throws {
        let ca = try ClusterPKI.makeCA()
        let credential = try ClusterPKI.issue(CertificateRequest(identity: PeerIdentity(role: .tenant, name: "acme"),
                                                                 dnsNames: ["a.example"], ipAddresses: ["192.0.2.7"], days: 30), ca: ca)
        let certificate = try Certificate(pemEncoded: credential.certificatePEM)
        let names = try #require(try certificate.extensions.subjectAlternativeNames)
        #expect(names.contains(.uniformResourceIdentifier("nestor://tenant/acme")))
        #expect(names.contains(.dnsName("a.example")))
        #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: [192, 0, 2, 7][...]))))
        let usages = try #require(try certificate.extensions.extendedKeyUsage)
        #expect(usages.contains(.serverAuth) && usages.contains(.clientAuth))
        #expect(try certificate.extensions.basicConstraints == .notCertificateAuthority)
        let lifetime = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
        #expect(abs(lifetime - 30 * 86_400) < 1)
        let caCertificate = try Certificate(pemEncoded: ca.certificatePEM)
        #expect(certificate.issuer == caCertificate.subject)
        #expect(caCertificate.publicKey.isValidSignature(certificate.signature, for: certificate))
        #expect(ClusterPKI.identities(inDER: try certificate.derBytes()) == [PeerIdentity(role: .tenant, name: "acme")])
    }

    @Test func badInputIsRefusedWithItsReason() throws {
        let ca = try ClusterPKI.makeCA()
        let identity = PeerIdentity(role: .admin, name: "ops")
        for (request, text) in [
            (CertificateRequest(identity: identity, days: 0), "--days 0"),
            (CertificateRequest(identity: identity, dnsNames: ["bad name"]), "--dns 'bad name'"),
            (CertificateRequest(identity: identity, dnsNames: ["-x.example"]), "--dns '-x.example'"),
            (CertificateRequest(identity: identity, ipAddresses: ["300.1.1.1"]), "--ip '300.1.1.1'"),
        ] {
            let error = #expect(throws: PKIError.self) { try ClusterPKI.issue(request, ca: ca) }
            #expect(error?.kind == .badInput)
            #expect(error?.message.contains(text) == true)
        }
        let missing = #expect(throws: PKIError.self) { try PKIDirectory(path: temporaryDirectory()).loadCA() }
        #expect(missing?.message.contains("clusterctl pki init") == true)
    }

    @Test func theVerifierNamesWhyACertificateIsRefused() throws {
        let ca = try ClusterPKI.makeCA()
        let verifier = try PeerVerifier(caPEM: ca.certificatePEM)
        let identity = PeerIdentity(role: .agent, name: "b1")
        func der(_ credential: IssuedCredential) throws -> [UInt8] {
            try Certificate(pemEncoded: credential.certificatePEM).derBytes()
        }

        let good = try ClusterPKI.issue(CertificateRequest(identity: identity), ca: ca)
        #expect(try verifier.verify(chainDER: [der(good)]) == .success(identity))

        let expired = try ClusterPKI.issue(CertificateRequest(identity: identity, days: 1), ca: ca,
                                           validFrom: Date().addingTimeInterval(-5 * 86_400))
        guard case .failure(let refusal) = try verifier.verify(chainDER: [der(expired)]) else {
            Issue.record("an expired certificate verified")
            return
        }
        #expect(refusal.message.contains("nestor://agent/b1 expired at"))

        let future = try ClusterPKI.issue(CertificateRequest(identity: identity), ca: ca, validFrom: Date().addingTimeInterval(86_400))
        guard case .failure(let early) = try verifier.verify(chainDER: [der(future)]) else {
            Issue.record("a not-yet-valid certificate verified")
            return
        }
        #expect(early.message.contains("is not valid before"))

        let stranger = try ClusterPKI.issue(CertificateRequest(identity: identity), ca: try ClusterPKI.makeCA(commonName: "Other CA"))
        guard case .failure(let foreign) = try verifier.verify(chainDER: [der(stranger)]) else {
            Issue.record("a certificate of another CA verified")
            return
        }
        #expect(foreign.message.contains("was not issued by this cluster's CA"))

        // Same subject name as the cluster CA, another key: told apart by the key identifier.
        let impostor = try ClusterPKI.issue(CertificateRequest(identity: identity), ca: try ClusterPKI.makeCA())
        guard case .failure(let forged) = try verifier.verify(chainDER: [der(impostor)]) else {
            Issue.record("a certificate signed by another key verified")
            return
        }
        #expect(forged.message.contains("was not issued by this cluster's CA"))

        // The CA's own certificate presented as a member's.
        guard case .failure(let caAsLeaf) = try verifier.verify(chainDER: [der(ca)]) else {
            Issue.record("the CA verified as a member")
            return
        }
        #expect(caAsLeaf.message.contains("is a CA certificate, not a member's"))

        #expect(verifier.verify(chainDER: []) == .failure(PeerRefusal("the peer presented no certificate")))
    }
}
