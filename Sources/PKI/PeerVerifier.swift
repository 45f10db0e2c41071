public import Foundation
public import WireCodec
import SwiftASN1
import X509

/// Why a peer's certificate was refused, in one line that names the certificate.
public struct PeerRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(_ message: String) { self.message = message }
}

/// Verifies the certificate a peer presents in the TLS handshake. Nestor's certificates are
/// issued directly by the cluster CA (no intermediates), so the path is the leaf and the CA:
/// the leaf must be signed by the CA's key, name the CA as its issuer, be within its validity
/// period (and the CA within its own), not be a CA, allow the TLS usage it is presented for,
/// and carry exactly one Nestor identity as a URI SAN. Synchronous, so that it runs on the
/// connection's event loop without waiting for any other thread.
public struct PeerVerifier: Sendable {
    /// The TLS role the peer's certificate is presented for.
    public enum Usage: Sendable { case client, server }

    private let ca: Certificate

    public init(caPEM: String) throws(PKIError) {
        do {
            ca = try Certificate(pemEncoded: caPEM)
        } catch {
            throw PKIError(kind: .failure, message: "cannot read the CA certificate: \(error)")
        }
    }

    /// The identity of the holder of `chain` (leaf first, DER; anything after the leaf is
    /// ignored), or why it is refused.
    public func verify(chainDER chain: [[UInt8]], usage: Usage? = nil, now: Date = Date()) -> Result<PeerIdentity, PeerRefusal> {
        guard let leafDER = chain.first else { return .failure(PeerRefusal("the peer presented no certificate")) }
        let leaf: Certificate
        do {
            leaf = try Certificate(derEncoded: leafDER)
        } catch {
            return .failure(PeerRefusal("the peer's certificate does not parse: \(error)"))
        }
        let name = Self.describe(leaf)
        let authority = try? leaf.extensions.authorityKeyIdentifier?.keyIdentifier
        let caKey = try? ca.extensions.subjectKeyIdentifier?.keyIdentifier
        if leaf.issuer != ca.subject || (authority != nil && caKey != nil && authority! != caKey!) {
            return .failure(PeerRefusal("certificate \(name) was not issued by this cluster's CA (its issuer is \(leaf.issuer))"))
        }
        guard ca.publicKey.isValidSignature(leaf.signature, for: leaf) else {
            return .failure(PeerRefusal("certificate \(name) does not verify against the cluster CA: its signature is not the CA's"))
        }
        if now > leaf.notValidAfter {
            return .failure(PeerRefusal("certificate \(name) expired at \(Self.format(leaf.notValidAfter))"))
        }
        if now < leaf.notValidBefore {
            return .failure(PeerRefusal("certificate \(name) is not valid before \(Self.format(leaf.notValidBefore))"))
        }
        if now > ca.notValidAfter || now < ca.notValidBefore {
            return .failure(PeerRefusal("the cluster CA is outside its validity period (\(Self.format(ca.notValidBefore)) to \(Self.format(ca.notValidAfter)))"))
        }
        if let constraints = try? leaf.extensions.basicConstraints, case .isCertificateAuthority = constraints {
            return .failure(PeerRefusal("certificate \(name) is a CA certificate, not a member's"))
        }
        if let usage, let usages = try? leaf.extensions.extendedKeyUsage {
            let needed: ExtendedKeyUsage.Usage = usage == .client ? .clientAuth : .serverAuth
            guard usages.contains(needed) else {
                return .failure(PeerRefusal("certificate \(name) does not allow TLS \(usage == .client ? "client" : "server") use"))
            }
        }
        let nestor = ClusterPKI.uris(of: leaf).filter { $0.hasPrefix("nestor://") }
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

    /// The identity of the holder of the PEM certificate `pem` (its first certificate), or why
    /// it is refused: the same checks as for a peer, for a process to check its own credentials.
    public func verify(certificatePEM pem: String, usage: Usage? = nil, now: Date = Date()) -> Result<PeerIdentity, PeerRefusal> {
        let der: [UInt8]
        do {
            der = try PEMDocument(pemString: pem).derBytes
        } catch {
            return .failure(PeerRefusal("the certificate does not parse: \(error)"))
        }
        return verify(chainDER: [der], usage: usage, now: now)
    }

    static func describe(_ certificate: Certificate) -> String {
        (["'\(certificate.subject)'"] + ClusterPKI.uris(of: certificate)).joined(separator: " ")
    }

    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: date)
    }

}
