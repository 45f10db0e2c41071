import Foundation
public import WireCodec
public import NestorPKI

extension TLSIdentity {
    /// Loads a peer's credentials: explicit PEM files when given, else `IDENTITY.pem`,
    /// `IDENTITY-key.pem` and `ca.pem` from a PKI directory (clusterctl pki init / issue).
    /// Throws a message that names the missing file and how to make it.
    public static func load(identity: PeerIdentity, pkiDirectory: String?, certificate: String?, key: String?,
                            ca: String?) throws(CredentialError) -> TLSIdentity {
        func read(_ path: String, _ what: String) throws(CredentialError) -> String {
            do { return try String(contentsOfFile: path, encoding: .utf8) }
            catch { throw CredentialError(message: "cannot read \(what) \(path): \((error as NSError).localizedDescription)") }
        }
        if let certificate, let key, let ca {
            return TLSIdentity(certificatePEM: try read(certificate, "the certificate"), privateKeyPEM: try read(key, "the key"),
                               caPEM: try read(ca, "the CA certificate"))
        }
        guard let pkiDirectory else {
            throw CredentialError(message: "no credentials: give --pki-dir (with ca.pem and \(identity.role.rawValue)-\(identity.name).pem), or --cert, --key and --ca")
        }
        let directory = PKIDirectory(path: pkiDirectory)
        do {
            let credential = try directory.load(identity)
            let caPEM = try ca.map { path throws(CredentialError) in try read(path, "the CA certificate") } ?? directory.loadCA().certificatePEM
            return TLSIdentity(certificatePEM: try certificate.map { path throws(CredentialError) in try read(path, "the certificate") } ?? credential.certificatePEM,
                               privateKeyPEM: try key.map { path throws(CredentialError) in try read(path, "the key") } ?? credential.privateKeyPEM,
                               caPEM: caPEM)
        } catch let error as CredentialError {
            throw error
        } catch let error as PKIError {
            throw CredentialError(message: error.message)
        } catch {
            throw CredentialError(message: "\(error)")
        }
    }
}

extension TLSIdentity {
    /// The identity these credentials carry, checked as a peer would check them (issued by the
    /// CA, valid now, usable for `usage`, one Nestor identity), which must be `expected`: a
    /// process refuses to start with another role's certificate.
    public func verifiedIdentity(_ expected: ExpectedPeer, usage: PeerVerifier.Usage) throws(CredentialError) -> PeerIdentity {
        let verifier: PeerVerifier
        do { verifier = try PeerVerifier(caPEM: caPEM) } catch { throw CredentialError(message: error.message) }
        switch verifier.verify(certificatePEM: certificatePEM, usage: usage) {
        case .failure(let refusal):
            throw CredentialError(message: "this process's own certificate is refused: \(refusal)")
        case .success(let identity):
            if let mismatch = expected.mismatch(identity) {
                throw CredentialError(message: "the certificate is \(mismatch); this process needs \(expected)")
            }
            return identity
        }
    }
}

/// Credentials that cannot be loaded, and why.
public struct CredentialError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// `HOST:PORT` as given on a command line or in a config file.
public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` (`[v6]:PORT` for IPv6); nil when it is not one.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
