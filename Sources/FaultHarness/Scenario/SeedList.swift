/// Seeds as people write them: `3`, `1-5`, `1,4,9-10`.
public enum SeedList {
    /// The most seeds one list may name.
    public static let limit: UInt64 = 10_000_000

    public static func parse(_ text: String) throws(ScenarioError) -> [UInt64] {
        var seeds: [UInt64] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = UInt64(bounds[0]), let high = UInt64(bounds[bounds.count - 1]), low <= high else {
                throw ScenarioError("'\(text)' is not a seed, a range or a list of them (like 1-5 or 1,4,9-10)")
            }
            guard high - low < limit, UInt64(seeds.count) + (high - low) < limit else {
                throw ScenarioError("'\(text)' names more than \(limit) seeds")
            }
            seeds += Array(low...high)
        }
        return seeds
    }
}
