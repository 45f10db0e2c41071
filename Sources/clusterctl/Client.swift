import ArgumentParser
import ClusterCore
import CommandLineSupport
import Foundation
import Logging
import NIOCore
import Protos
import Wire
import WireCodec
import Sizes

/// Where the controller is and who we are: flags, else environment (NESTOR_ENDPOINT,
/// NESTOR_PKI_DIR, NESTOR_IDENTITY, NESTOR_CERT, NESTOR_KEY, NESTOR_CA), else the config file
/// (--config, NESTOR_CONFIG, or ~/.config/nestor/clusterctl.yaml).
struct ClientOptions: ParsableArguments {
    static let keys = ["endpoint", "pki-dir", "identity", "cert", "key", "ca", "output"]

    @Option(help: "The controller, HOST:PORT (env NESTOR_ENDPOINT; default 127.0.0.1:7400).")
    var endpoint: String?
    @Option(help: "PKI directory with ca.pem and ROLE-NAME.pem (env NESTOR_PKI_DIR).")
    var pkiDir: String?
    @Option(help: "Who you are, ROLE/NAME: admin/NAME or tenant/NAME (env NESTOR_IDENTITY).")
    var identity: String?
    @Option(help: "Certificate file (PEM; env NESTOR_CERT).")
    var cert: String?
    @Option(help: "Private key file (PEM; env NESTOR_KEY).")
    var key: String?
    @Option(help: "Cluster CA certificate (PEM; env NESTOR_CA).")
    var ca: String?
    @Option(help: "Config file with any of: endpoint, pki-dir, identity, cert, key, ca, output (env NESTOR_CONFIG).")
    var config: String?
    @Option(name: [.customShort("o"), .long], help: "Output: table or json (default table).")
    var output: String?
    @Option(help: "Items per page when listing (1-5000; default: the controller's, 500); every page is fetched.")
    var pageSize: Int?

    /// Where to connect, as whom, and how to print; read once per command.
    struct Resolved {
        var endpoint: Endpoint
        var tls: TLSIdentity
        var json: Bool
        var identity: PeerIdentity?
        var pageSize: UInt32?
    }

    func resolved() throws -> Resolved {
        let environment = ProcessInfo.processInfo.environment
        var file: ConfigFile?
        let home = environment["HOME"].map { $0 + "/.config/nestor/clusterctl.yaml" }
        let path = config ?? environment["NESTOR_CONFIG"] ?? home.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        if let path {
            do { file = try ConfigFile(path: path, known: Self.keys) } catch { throw InputError(message: error.message) }
        }
        func value(_ flag: String?, _ key: String, _ variable: String) -> String? {
            flag ?? environment[variable] ?? file?.values[key]
        }
        let outputText = value(output, "output", "NESTOR_OUTPUT") ?? "table"
        guard outputText == "table" || outputText == "json" else {
            throw InputError(message: "--output '\(outputText)' is not table or json")
        }
        if let pageSize, !(1...5000).contains(pageSize) { throw InputError(message: "--page-size \(pageSize) is not between 1 and 5000") }
        let endpointText = value(endpoint, "endpoint", "NESTOR_ENDPOINT") ?? "127.0.0.1:7400"
        guard let endpoint = Endpoint(endpointText) else { throw InputError(message: "endpoint '\(endpointText)' is not HOST:PORT") }
        let identityText = value(identity, "identity", "NESTOR_IDENTITY")
        var peer = PeerIdentity(role: .admin, name: "admin")
        if let identityText {
            let parts = identityText.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let role = Role(rawValue: String(parts[0])), PeerIdentity.isValidName(String(parts[1])) else {
                throw InputError(message: "identity '\(identityText)' is not ROLE/NAME (admin/NAME or tenant/NAME)")
            }
            peer = PeerIdentity(role: role, name: String(parts[1]))
        }
        let certificate = value(cert, "cert", "NESTOR_CERT"), keyPath = value(key, "key", "NESTOR_KEY")
        let pki = value(pkiDir, "pki-dir", "NESTOR_PKI_DIR")
        if identityText == nil, pki != nil, certificate == nil {
            throw InputError(message: "with --pki-dir, say who you are: --identity admin/NAME or tenant/NAME")
        }
        do {
            let tls = try TLSIdentity.load(identity: peer, pkiDirectory: pki, certificate: certificate, key: keyPath,
                                           ca: value(ca, "ca", "NESTOR_CA"))
            return Resolved(endpoint: endpoint, tls: tls, json: outputText == "json", identity: identityText == nil ? nil : peer,
                            pageSize: pageSize.map(UInt32.init))
        } catch {
            throw InputError(message: error.message)
        }
    }
}

/// A refusal or failure from the controller, or an unreachable controller: exit code 1.
struct RemoteError: Error {
    let message: String
}

/// Connects to the controller, runs `body`, closes; errors become one-line messages.
func withController<T>(_ client: ClientOptions.Resolved, _ body: (WireConnection) async throws -> T) async throws -> T {
    try await withPeer(client, at: client.endpoint, expecting: .role(.controller), named: "the controller", body)
}

/// Connects to `endpoint`, which must present `expected`'s identity, runs `body`, closes;
/// errors become one-line messages that call the peer `name`.
func withPeer<T>(_ client: ClientOptions.Resolved, at endpoint: Endpoint, expecting expected: ExpectedPeer, named name: String,
                 _ body: (WireConnection) async throws -> T) async throws -> T {
    let tls = client.tls
    var logger = Logger(label: "nestor.clusterctl") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = .critical
    let connection: WireConnection
    do {
        connection = try await WireClient.connect(host: endpoint.host, port: endpoint.port, tls: tls, server: expected, logger: logger,
                                                  connectTimeout: .seconds(5))
    } catch WireConnectionError.handshake(let reason) where reason.hasPrefix("the server ") {
        // "the server presented nestor://tenant/x ...", "the server did not accept this certificate ..."
        throw RemoteError(message: "the server at \(endpoint)\(reason.dropFirst("the server".count))")
    } catch {
        throw RemoteError(message: "cannot reach \(name) at \(endpoint): \(error)")
    }
    do {
        let result = try await body(connection)
        await connection.close(reason: "done")
        return result
    } catch let failure as WireFailure where failure.code == .invalidArgument {
        // A bad value is an input error wherever it is found: exit 2, as for a bad flag.
        await connection.close(reason: "done")
        throw InputError(message: failure.message)
    } catch let failure as WireFailure {
        await connection.close(reason: "done")
        throw RemoteError(message: failure.message)
    } catch let error as WireConnectionError {
        throw RemoteError(message: "\(name) at \(endpoint): \(error)")
    } catch {
        await connection.close(reason: "done")
        throw error
    }
}

/// Parses a size flag strictly (binary units).
func parseSize(_ text: String, flag: String) throws -> UInt64 {
    switch ByteSize.parse(text) {
    case .success(let bytes): return bytes
    case .failure(let error): throw InputError(message: "--\(flag) \(error)")
    }
}

/// Every page of a list: asks for pages until the controller gives no next-page token.
func allPages<Item>(_ fetch: (_ token: String?) async throws -> (items: [Item], next: String?)) async throws -> [Item] {
    var items: [Item] = []
    var token: String?
    var seen: Set<String> = []
    repeat {
        let page = try await fetch(token)
        items += page.items
        token = page.next
        if let token, !seen.insert(token).inserted {
            throw RemoteError(message: "the controller gave the page token '\(token)' twice; the list is incomplete")
        }
    } while token != nil
    return items
}
