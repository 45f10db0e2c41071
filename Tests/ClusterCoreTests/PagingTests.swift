import ClusterCore
import Testing

@Suite struct PagingTests {
    let names = (0..<23).map { "t" + String(repeating: "0", count: $0 < 10 ? 2 : 1) + String($0) }

    @Test func pagesFollowTheirTokensToTheEndAndCoverEveryItemOnce() throws {
        var seen: [String] = []
        var token: String?
        var pages = 0
        repeat {
            let page = try Paging.page(names, key: { $0 }, token: token, size: 5) { $0.utf8.count }
            seen += page.items
            token = page.next
            pages += 1
        } while token != nil
        #expect(seen == names && pages == 5)
    }

    /// A page never carries more bytes than the budget (the response frame's limit), but
    /// always at least one item, so that paging makes progress.
    @Test func aPageStopsAtTheByteBudget() throws {
        let big = (0..<10).map { String(repeating: "x", count: 100) + "\($0)" }
        let page = try Paging.page(big, key: { $0 }, token: nil, size: nil, byteBudget: 350) { $0.utf8.count }
        #expect(page.items.count == 3 && page.next == big[2])
        let huge = try Paging.page(big, key: { $0 }, token: nil, size: nil, byteBudget: 10) { $0.utf8.count }
        #expect(huge.items.count == 1)
    }

    @Test(arguments: [UInt32(0), 5001, .max])
    func aPageSizeOutsideItsRangeIsRefused(_ size: UInt32) {
        let error = #expect(throws: ClusterError.self) { try Paging.page(names, key: { $0 }, token: nil, size: size) { _ in 1 } }
        #expect(error?.kind == .invalidArgument && error?.field == "pageSize")
    }

    @Test func aTokenThatIsNoNameIsRefused() {
        let error = #expect(throws: ClusterError.self) { try Paging.page(names, key: { $0 }, token: "../x\n", size: 5) { _ in 1 } }
        #expect(error?.field == "pageToken")
        // A token past every item gives an empty last page.
        #expect((try? Paging.page(names, key: { $0 }, token: "zzz", size: 5) { _ in 1 })?.items.isEmpty == true)
    }
}
