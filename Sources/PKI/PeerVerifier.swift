public import Foundation
public import WireCodec
import X509

/// Why a peer's certificate was refused, in one line that names the certificate.
public struct PeerRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(_ message: String) { self.message = message }
}

/// Verifies the certificate chain a peer presents in the TLS handshake: it must chain to the
/// cluster CA (RFC 5280 path validation: signatures, validity, basic constraints, key usage),
/// and its leaf must carry exactly one Nestor identity as a URI SAN.
public struct PeerVerifier: Sendable {
    private let ca: Certificate

    public init(caPEM: String) throws(PKIError) {
        do {
            ca = try Certificate(pemEncoded: caPEM)
        } catch {
            throw PKIError(kind: .failure, message: "cannot read the CA certificate: \(error)")
        }
    }

    /// The identity of the holder of `chain` (leaf first, DER), or why it is refused.
    public func verify(chainDER chain: [[UInt8]], now: Date = Date()) async -> Result<PeerIdentity, PeerRefusal> {
        guard let leafDER = chain.first else { return .failure(PeerRefusal("the peer presented no certificate")) }
        let leaf: Certificate
        do {
            leaf = try Certificate(derEncoded: leafDER)
        } catch {
            return .failure(PeerRefusal("the peer's certificate does not parse: \(error)"))
        }
        let name = Self.describe(leaf)
        if now > leaf.notValidAfter {
            return .failure(PeerRefusal("certificate \(name) expired at \(Self.format(leaf.notValidAfter))"))
        }
        if now < leaf.notValidBefore {
            return .failure(PeerRefusal("certificate \(name) is not valid before \(Self.format(leaf.notValidBefore))"))
        }
        let intermediates = chain.dropFirst().compactMap { try? Certificate(derEncoded: $0) }
        var verifier = Verifier(rootCertificates: CertificateStore([ca])) { RFC5280Policy(validationTime: now) }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates))
        if case .couldNotValidate(let failures) = result {
            let authority = try? leaf.extensions.authorityKeyIdentifier?.keyIdentifier
            let caKey = try? ca.extensions.subjectKeyIdentifier?.keyIdentifier
            if leaf.issuer != ca.subject || (authority != nil && caKey != nil && authority! != caKey!) {
                return .failure(PeerRefusal("certificate \(name) was not issued by this cluster's CA (its issuer is \(leaf.issuer))"))
            }
            let reason = failures.first.map { Self.shorten($0.policyFailureReason.description) } ?? "no path to the cluster CA"
            return .failure(PeerRefusal("certificate \(name) does not verify against the cluster CA: \(reason)"))
        }
        let uris = (try? leaf.extensions.subjectAlternativeNames)?.compactMap { general -> String? in
            if case .uniformResourceIdentifier(let uri) = general { return uri }
            return nil
        } ?? []
        let nestor = uris.filter { $0.hasPrefix("nestor://") }
        switch nestor.count {
        case 0:
            return .failure(PeerRefusal("certificate \(name) carries no nestor:// URI SAN, so it names no Nestor identity"))
        case 1:
            guard let identity = PeerIdentity(uri: nestor[0]) else {
                return .failure(PeerRefusal("certificate \(name) carries '\(nestor[0])', which is not nestor://controller|agent|admin|tenant/NAME"))
            }
            return .success(identity)
        default:
            return .failure(PeerRefusal("certificate \(name) carries \(nestor.count) Nestor identities (\(nestor.joined(separator: ", "))); exactly one is allowed"))
        }
    }

    static func describe(_ certificate: Certificate) -> String {
        var parts = ["'\(certificate.subject)'"]
        if let uris = try? certificate.extensions.subjectAlternativeNames {
            for case .uniformResourceIdentifier(let uri) in uris { parts.append(uri) }
        }
        return parts.joined(separator: " ")
    }

    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: date)
    }

    /// Policy failure texts embed whole certificates; keep the part before the first one.
    static func shorten(_ text: String) -> String {
        let cut = text.range(of: "Certificate(").map { String(text[..<$0.lowerBound]) } ?? text
        return cut.count > 200 ? String(cut.prefix(200)) + "..." : cut
    }
}
