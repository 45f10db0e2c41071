/// Lists a page at a time (Kubernetes' `limit` and `continue`): the items after the page
/// token (the key of the last item of the page before), at most the page size, and never
/// more encoded bytes than fit a response frame with room to spare. The token is opaque to
/// clients: they pass back what the last page gave.
public enum Paging {
    public static let defaultPageSize = 500
    public static let maxPageSize = 5_000
    /// Half the default frame limit (1 MiB): a page's items plus their framing stay within it.
    public static let byteBudget = 512 << 10

    /// The page of `items` (sorted by `key`, ascending) that `token` and `size` ask for, and
    /// the token of the next page (nil on the last page).
    public static func page<T>(_ items: [T], key: (T) -> String, token: String?, size: UInt32?, byteBudget: Int = byteBudget,
                               encodedSize: (T) -> Int) throws(ClusterError) -> (items: [T], next: String?) {
        let limit = try pageSize(size)
        if let token, ObjectName.problem(token, what: "page token") != nil {
            throw ClusterError(.invalidArgument, "the page token is not one this controller gave", field: "pageToken")
        }
        let start = token.map { after in items.firstIndex { key($0) > after } ?? items.count } ?? 0
        var page: [T] = []
        var bytes = 0
        var index = start
        while index < items.count, page.count < limit {
            let size = encodedSize(items[index]) + 8
            // Always at least one item, so that every page makes progress.
            if !page.isEmpty, bytes + size > byteBudget { break }
            bytes += size
            page.append(items[index])
            index += 1
        }
        return (page, index < items.count ? page.last.map(key) : nil)
    }

    static func pageSize(_ size: UInt32?) throws(ClusterError) -> Int {
        guard let size else { return defaultPageSize }
        guard size >= 1, size <= UInt32(maxPageSize) else {
            throw ClusterError(.invalidArgument, "page size \(size) is not between 1 and \(maxPageSize)", field: "pageSize")
        }
        return Int(size)
    }
}
