/// The role a certificate gives its holder (SPEC.md, section 1).
public enum Role: String, Sendable, Equatable, Hashable, CaseIterable, Codable {
    case controller, agent, admin, tenant
}

/// Who is at the other end of a connection: the URI SAN `nestor://ROLE/NAME` of its
/// verified certificate.
public struct PeerIdentity: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let role: Role
    public let name: String

    public init(role: Role, name: String) {
        self.role = role
        self.name = name
    }

    /// Parses `nestor://ROLE/NAME`; nil when the URI is not a Nestor identity.
    public init?(uri: String) {
        let prefix = "nestor://"
        guard uri.hasPrefix(prefix) else { return nil }
        let rest = uri.dropFirst(prefix.count)
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let role = Role(rawValue: String(parts[0])),
              PeerIdentity.isValidName(String(parts[1])) else { return nil }
        self.init(role: role, name: String(parts[1]))
    }

    /// 1 to 63 characters from a-z, 0-9, '-', '_' and '.'.
    public static func isValidName(_ name: String) -> Bool {
        guard (1...63).contains(name.count) else { return false }
        return name.unicodeScalars.allSatisfy { scalar in
            ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_" || scalar == "."
        }
    }

    public var uri: String { "nestor://\(role.rawValue)/\(name)" }
    public var description: String { uri }
}

/// Whom a client expects at the other end of a connection it opens: a peer of one role (a
/// controller, for clusterctl and agents), or one identity (the agent the controller named,
/// for a migration stream). A server whose verified identity differs is refused during the
/// handshake, so that a certificate of the cluster CA held by a tenant cannot pose as the
/// controller.
public enum ExpectedPeer: Sendable, Equatable, CustomStringConvertible {
    case role(Role)
    case identity(PeerIdentity)

    /// Why `peer` is not the expected one ("nestor://tenant/acme, a tenant's certificate, not
    /// a controller's"), or nil when it is.
    public func mismatch(_ peer: PeerIdentity) -> String? {
        switch self {
        case .role(let role):
            if peer.role == role { return nil }
            return "\(peer.uri), \(Self.article(peer.role)) \(peer.role.rawValue)'s certificate, not \(Self.article(role)) \(role.rawValue)'s"
        case .identity(let identity):
            if peer == identity { return nil }
            return "\(peer.uri), not \(identity.uri)"
        }
    }

    public var description: String {
        switch self {
        case .role(let role): return "nestor://\(role.rawValue)/..."
        case .identity(let identity): return identity.uri
        }
    }

    static func article(_ role: Role) -> String { role == .admin || role == .agent ? "an" : "a" }
}

/// What a catalogued message is (SPEC.md, section 11).
public enum MessageKind: String, Sendable, Equatable {
    case request, response, event, control
}

/// One message type of the catalogue: its name, kind, response and who may send it.
public struct CatalogEntry: Sendable, Equatable {
    public let type: MessageType
    public let name: String
    public let kind: MessageKind
    public let response: MessageType?
    public let roles: Set<Role>

    public init(type: MessageType, name: String, kind: MessageKind, response: MessageType?, roles: Set<Role>) {
        self.type = type
        self.name = name
        self.kind = kind
        self.response = response
        self.roles = roles
    }
}
