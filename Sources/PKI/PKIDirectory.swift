import Foundation
public import WireCodec

/// A directory holding the cluster CA and issued credentials:
/// `ca.pem`, `ca-key.pem`, and `ROLE-NAME.pem` with `ROLE-NAME-key.pem` per identity.
/// Private keys are written with mode 0600; nothing is overwritten unless asked.
public struct PKIDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public var caCertificatePath: String { (path as NSString).appendingPathComponent("ca.pem") }
    public var caKeyPath: String { (path as NSString).appendingPathComponent("ca-key.pem") }

    public func certificatePath(for identity: PeerIdentity) -> String {
        (path as NSString).appendingPathComponent("\(identity.role.rawValue)-\(identity.name).pem")
    }

    public func keyPath(for identity: PeerIdentity) -> String {
        (path as NSString).appendingPathComponent("\(identity.role.rawValue)-\(identity.name)-key.pem")
    }

    /// Creates the directory and a new CA in it; refuses to replace an existing CA.
    @discardableResult
    public func initialize(days: Int = 3650, commonName: String = "Nestor cluster CA") throws(PKIError) -> IssuedCredential {
        if FileManager.default.fileExists(atPath: caCertificatePath) || FileManager.default.fileExists(atPath: caKeyPath) {
            throw PKIError(kind: .exists, message: "\(path) already holds a CA (ca.pem); a new CA would orphan every certificate it issued")
        }
        try createDirectory()
        let ca = try ClusterPKI.makeCA(commonName: commonName, days: days)
        try write(ca.privateKeyPEM, to: caKeyPath, mode: 0o600)
        try write(ca.certificatePEM, to: caCertificatePath, mode: 0o644)
        return ca
    }

    /// The CA, read from the directory.
    public func loadCA() throws(PKIError) -> IssuedCredential {
        IssuedCredential(certificatePEM: try read(caCertificatePath, what: "the CA certificate",
                                                  hint: "; create it with: clusterctl pki init --dir \(path)"),
                         privateKeyPEM: try read(caKeyPath, what: "the CA key"))
    }

    /// Issues and writes a credential; refuses to replace one unless `overwrite`.
    @discardableResult
    public func issue(_ request: CertificateRequest, overwrite: Bool = false) throws(PKIError) -> IssuedCredential {
        let certPath = certificatePath(for: request.identity)
        if !overwrite && FileManager.default.fileExists(atPath: certPath) {
            throw PKIError(kind: .exists, message: "\(certPath) exists; pass --force to replace it")
        }
        let credential = try ClusterPKI.issue(request, ca: try loadCA())
        try write(credential.privateKeyPEM, to: keyPath(for: request.identity), mode: 0o600)
        try write(credential.certificatePEM, to: certPath, mode: 0o644)
        return credential
    }

    /// A credential, read from the directory.
    public func load(_ identity: PeerIdentity) throws(PKIError) -> IssuedCredential {
        IssuedCredential(certificatePEM: try read(certificatePath(for: identity), what: "the certificate of \(identity)",
                                                  hint: "; issue it with: clusterctl pki issue --dir \(path) --role \(identity.role.rawValue) --name \(identity.name)"),
                         privateKeyPEM: try read(keyPath(for: identity), what: "the key of \(identity)"))
    }

    private func createDirectory() throws(PKIError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw PKIError(kind: .failure, message: "cannot create \(path): \(error.localizedDescription)")
        }
    }

    private func read(_ file: String, what: String, hint: String = "") throws(PKIError) -> String {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw PKIError(kind: .missing, message: "cannot read \(what) at \(file)\(hint)")
        }
        return text
    }

    /// Writes `text` to `file` with `mode`, replacing it atomically.
    private func write(_ text: String, to file: String, mode: Int) throws(PKIError) {
        let temporary = file + ".tmp-\(getpid())"
        let created = FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8),
                                                     attributes: [.posixPermissions: mode])
        guard created, chmod(temporary, mode_t(mode)) == 0, rename(temporary, file) == 0 else {
            unlink(temporary)
            throw PKIError(kind: .failure, message: "cannot write \(file)")
        }
    }
}
