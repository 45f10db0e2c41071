import ArgumentParser
import CommandLineSupport
import Foundation
import NestorPKI
import WireCodec

/// Nestor's command-line client.
struct ClusterCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clusterctl",
        abstract: "Nestor's command-line client.",
        discussion: """
            Errors in the input are reported in one line with exit code 2; a refusal by the \
            controller, or a controller that cannot be reached, in one line with exit code 1.
            """,
        version: "0.1.0",
        subcommands: [PKI.self, TenantCommand.self, PartitionCommand.self, VMCommand.self, BladeCommand.self, MigrationCommand.self, EventsCommand.self])
}

/// An input error: one line on stderr, exit code 2.
struct InputError: Error {
    let message: String
}

struct PKI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "The cluster's certificate authority and the certificates of its members.",
        discussion: """
            Every Nestor process authenticates with a certificate issued by the cluster CA; its \
            identity is the URI SAN nestor://ROLE/NAME. Keys are P-256, certificates ECDSA-SHA256; \
            private keys are written with mode 0600. No external tool is needed.
            """,
        subcommands: [Init.self, Issue.self, Show.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the cluster CA in a directory (ca.pem, ca-key.pem).",
            discussion: "Refuses to replace an existing CA: every certificate it issued would stop verifying.")

        @Option(help: "The directory to hold the CA and the certificates (created with mode 0700).")
        var dir: String
        @Option(help: "Days the CA is valid.")
        var days: Int = 3650

        func run() throws {
            let directory = PKIDirectory(path: dir)
            do {
                try directory.initialize(days: days)
            } catch {
                throw InputError(message: error.message)
            }
            print("created the cluster CA: \(directory.caCertificatePath) (key \(directory.caKeyPath), mode 0600)")
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a certificate and key for one identity, signed by the cluster CA.",
            discussion: """
                Writes DIR/ROLE-NAME.pem and DIR/ROLE-NAME-key.pem (mode 0600). The certificate \
                carries the URI SAN nestor://ROLE/NAME and may be used as TLS server and client.
                """)

        @Option(help: "The directory holding the CA (see clusterctl pki init).")
        var dir: String
        @Option(help: "The role: controller, agent, admin or tenant.")
        var role: String
        @Option(help: "The name: 1 to 63 characters from a-z, 0-9, '-', '_' and '.'.")
        var name: String
        @Option(help: "A DNS name to add as a SAN (repeatable).")
        var dns: [String] = []
        @Option(help: "An IPv4 or IPv6 address to add as a SAN (repeatable).")
        var ip: [String] = []
        @Option(help: "Days the certificate is valid.")
        var days: Int = 365
        @Flag(help: "Replace an existing certificate and key for this identity.")
        var force = false

        func run() throws {
            guard let role = Role(rawValue: role) else {
                throw InputError(message: "--role '\(self.role)' is not one of controller, agent, admin, tenant")
            }
            guard PeerIdentity.isValidName(name) else {
                throw InputError(message: "--name '\(name)' must be 1 to 63 characters from a-z, 0-9, '-', '_' and '.'")
            }
            let identity = PeerIdentity(role: role, name: name)
            let directory = PKIDirectory(path: dir)
            do {
                try directory.issue(CertificateRequest(identity: identity, dnsNames: dns, ipAddresses: ip, days: days),
                                    overwrite: force)
            } catch {
                throw InputError(message: error.message)
            }
            print("issued \(identity): \(directory.certificatePath(for: identity)) (key \(directory.keyPath(for: identity)), mode 0600)")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the identity and validity of a certificate file.")

        @Argument(help: "A PEM certificate file.")
        var file: String

        func run() throws {
            guard let pem = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw InputError(message: "cannot read \(file)")
            }
            do {
                print(try ClusterPKI.summary(ofPEM: pem), terminator: "")
            } catch {
                throw InputError(message: "\(file): \(error.message)")
            }
        }
    }
}

exit(await CommandRunner.runAsync(ClusterCtl.self) { error in
    if let input = error as? InputError { return (input.message, 2) }
    if let remote = error as? RemoteError { return (remote.message, 1) }
    return nil
})
