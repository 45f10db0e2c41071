import Crypto
public import Foundation
import SwiftASN1
public import WireCodec
import X509

/// Why a PKI operation failed, in one line.
public struct PKIError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable { case badInput, exists, missing, failure }
    public var kind: Kind
    public var message: String
    public var description: String { message }

    static func badInput(_ message: String) -> PKIError { PKIError(kind: .badInput, message: message) }
}

/// A certificate and its private key, in PEM.
public struct IssuedCredential: Equatable, Sendable {
    public var certificatePEM: String
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// What to put in a leaf certificate.
public struct CertificateRequest: Equatable, Sendable {
    public var identity: PeerIdentity
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var days: Int

    public init(identity: PeerIdentity, dnsNames: [String] = [], ipAddresses: [String] = [], days: Int = 365) {
        self.identity = identity
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.days = days
    }
}

/// The cluster's certificate authority: P-256 keys, ECDSA with SHA-256, certificates whose
/// URI SAN carries the holder's Nestor identity (`nestor://ROLE/NAME`).
public enum ClusterPKI {
    /// A new self-signed CA valid for `days`.
    public static func makeCA(commonName: String = "Nestor cluster CA", days: Int = 3650,
                              now: Date = Date()) throws(PKIError) -> IssuedCredential {
        guard (1...36500).contains(days) else { throw .badInput("--days \(days) is not between 1 and 36500") }
        do {
            let key = P256.Signing.PrivateKey()
            let name = try DistinguishedName {
                CommonName(commonName)
                OrganizationName("Nestor")
            }
            let publicKey = Certificate.PublicKey(key.publicKey)
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            }
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
                notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
                issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
                issuerPrivateKey: Certificate.PrivateKey(key))
            return IssuedCredential(certificatePEM: try certificate.serializeAsPEM().pemString,
                                    privateKeyPEM: key.pemRepresentation)
        } catch {
            throw PKIError(kind: .failure, message: "cannot create the CA: \(error)")
        }
    }

    /// A leaf certificate for `request`, signed by the CA, for both TLS server and client use.
    public static func issue(_ request: CertificateRequest, ca: IssuedCredential,
                             now: Date = Date(), validFrom: Date? = nil) throws(PKIError) -> IssuedCredential {
        guard (1...36500).contains(request.days) else { throw .badInput("--days \(request.days) is not between 1 and 36500") }
        var alternativeNames: [GeneralName] = [.uniformResourceIdentifier(request.identity.uri)]
        for dns in request.dnsNames {
            guard isValidDNSName(dns) else { throw .badInput("--dns '\(dns)' is not a DNS name") }
            alternativeNames.append(.dnsName(dns))
        }
        for ip in request.ipAddresses {
            guard let bytes = ipAddressBytes(ip) else { throw .badInput("--ip '\(ip)' is not an IPv4 or IPv6 address") }
            alternativeNames.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...])))
        }
        let caCertificate: Certificate
        let caKey: P256.Signing.PrivateKey
        do {
            caCertificate = try Certificate(pemEncoded: ca.certificatePEM)
            caKey = try P256.Signing.PrivateKey(pemRepresentation: ca.privateKeyPEM)
        } catch {
            throw PKIError(kind: .failure, message: "cannot read the CA: \(error)")
        }
        do {
            let key = P256.Signing.PrivateKey()
            let publicKey = Certificate.PublicKey(key.publicKey)
            let subject = try DistinguishedName {
                CommonName(request.identity.name)
                OrganizationalUnitName(request.identity.role.rawValue)
                OrganizationName("Nestor")
            }
            let authority = try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(alternativeNames)
                SubjectKeyIdentifier(hash: publicKey)
                if let authority { AuthorityKeyIdentifier(keyIdentifier: authority) }
            }
            let start = validFrom ?? now.addingTimeInterval(-300)
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
                notValidBefore: start, notValidAfter: start.addingTimeInterval(Double(request.days) * 86_400),
                issuer: caCertificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: extensions, issuerPrivateKey: Certificate.PrivateKey(caKey))
            return IssuedCredential(certificatePEM: try certificate.serializeAsPEM().pemString,
                                    privateKeyPEM: key.pemRepresentation)
        } catch {
            throw PKIError(kind: .failure, message: "cannot issue the certificate: \(error)")
        }
    }

    /// The Nestor identities in a DER certificate's URI SANs.
    public static func identities(inDER der: [UInt8]) -> [PeerIdentity] {
        guard let certificate = try? Certificate(derEncoded: der) else { return [] }
        return uris(of: certificate).compactMap(PeerIdentity.init(uri:))
    }

    /// The URI SANs of a certificate, Nestor's or not.
    static func uris(of certificate: Certificate) -> [String] {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return [] }
        return names.compactMap { name in
            if case .uniformResourceIdentifier(let uri) = name { return uri }
            return nil
        }
    }

    /// A few lines describing a PEM certificate: subject, identities, other SANs, validity.
    public static func summary(ofPEM pem: String, now: Date = Date()) throws(PKIError) -> String {
        let certificate: Certificate
        do {
            certificate = try Certificate(pemEncoded: pem)
        } catch {
            throw PKIError(kind: .badInput, message: "not a PEM certificate: \(error)")
        }
        var lines = ["subject:   \(certificate.subject)", "issuer:    \(certificate.issuer)"]
        let names = (try? certificate.extensions.subjectAlternativeNames).map(Array.init) ?? []
        for name in names {
            switch name {
            case .uniformResourceIdentifier(let uri):
                lines.append(PeerIdentity(uri: uri).map { "identity:  \($0)" } ?? "uri:       \(uri) (not a Nestor identity)")
            case .dnsName(let dns):
                lines.append("dns:       \(dns)")
            case .ipAddress(let bytes):
                lines.append("ip:        \(formatIP(Array(bytes.bytes)))")
            default:
                lines.append("san:       \(name)")
            }
        }
        let formatter = ISO8601DateFormatter()
        lines.append("valid:     \(formatter.string(from: certificate.notValidBefore)) to \(formatter.string(from: certificate.notValidAfter))")
        let state = now > certificate.notValidAfter ? "expired" : now < certificate.notValidBefore ? "not yet valid" : "valid"
        lines.append("status:    \(state)")
        if let constraints = try? certificate.extensions.basicConstraints, case .isCertificateAuthority = constraints {
            lines.append("ca:        yes")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func formatIP(_ bytes: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        guard bytes.count == 4 || bytes.count == 16,
              bytes.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }) != nil else {
            return bytes.map { String($0) }.joined(separator: ".")
        }
        let end = text.firstIndex(of: 0) ?? text.count
        return String(decoding: text[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func isValidDNSName(_ name: String) -> Bool {
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        guard !name.isEmpty, name.count <= 253, labels.allSatisfy({ !$0.isEmpty && $0.count <= 63 }) else { return false }
        return labels.allSatisfy { label in
            label.first != "-" && label.last != "-"
                && label.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        }
    }

    /// 4 bytes for an IPv4 address, 16 for IPv6, nil for anything else.
    static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}
