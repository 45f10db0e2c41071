import InputText

/// Why the controller refused a command; the message is meant for the person who typed it.
public struct ClusterError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case invalidArgument, notFound, alreadyExists, failedPrecondition, permissionDenied, conflict, unavailable
    }
    public var kind: Kind
    public var message: String
    /// The request field at fault, when one is.
    public var field: String?
    /// For a refusal by authorization: what was refused, for the operator's log and audit
    /// trail. The caller sees `message` only (which may hide that the object exists).
    public var audit: String?

    public init(_ kind: Kind, _ message: String, field: String? = nil, audit: String? = nil) {
        self.kind = kind
        self.message = message
        self.field = field
        self.audit = audit
    }

    public var description: String { message }

    static func invalid(_ message: String, field: String? = nil) -> ClusterError { ClusterError(.invalidArgument, message, field: field) }
    static func notFound(_ message: String) -> ClusterError { ClusterError(.notFound, message) }
    static func exists(_ message: String) -> ClusterError { ClusterError(.alreadyExists, message) }
    static func precondition(_ message: String) -> ClusterError { ClusterError(.failedPrecondition, message) }
    static func denied(_ message: String) -> ClusterError { ClusterError(.permissionDenied, message, audit: message) }
    /// Another tenant's object: the caller is told it does not exist, the audit trail why.
    static func hidden(_ message: String, audit: String) -> ClusterError { ClusterError(.notFound, message, audit: audit) }
}

/// Who sends a command, from the identity in its certificate.
public enum Caller: Sendable, Hashable, CustomStringConvertible {
    case admin(String)
    case tenant(String)
    case agent(String)
    case controller(String)

    /// The tenant a caller is confined to; nil for admins (who see everything).
    public var confinedTenant: String? {
        if case .tenant(let name) = self { return name }
        return nil
    }

    public var isAdmin: Bool {
        if case .admin = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .admin(let name): return "admin \(name)"
        case .tenant(let name): return "tenant \(name)"
        case .agent(let name): return "agent \(name)"
        case .controller(let name): return "controller \(name)"
        }
    }

    /// Whether this caller may see or change objects of `tenant`.
    public func mayAccess(tenant: String) -> Bool {
        switch self {
        case .admin: return true
        case .tenant(let name): return name == tenant
        case .agent, .controller: return false
        }
    }
}

/// Names of tenants, partitions, VMs, groups and blades: 1 to 63 of a-z, 0-9, '-', '_', '.',
/// starting with a letter or digit.
public enum ObjectName {
    public static func problem(_ name: String, what: String) -> String? {
        if name.isEmpty { return "\(what) name is empty" }
        if name.count > 63 { return "\(what) name '\(InputText.shown(name, limit: 20))' is longer than 63 characters" }
        let allowed = name.unicodeScalars.allSatisfy { scalar in
            ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_" || scalar == "."
        }
        guard allowed, let first = name.unicodeScalars.first,
              ("a"..."z").contains(first) || ("0"..."9").contains(first) else {
            return "\(what) name '\(InputText.shown(name))' must be 1-63 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
        }
        return nil
    }
}
