/// What one run of one scenario with one seed came to: the counts of its history, the faults
/// injected, the violations found, and how long the cluster could not take a create.
public struct RunResult: Sendable, Equatable, Codable {
    public var scenario: String
    public var seed: UInt64
    public var backend: String
    public var durationSeconds: Double
    public var faults: Int
    public var ok: Int
    public var refused: Int
    public var failed: Int
    public var unknown: Int
    public var lostAcknowledged: Int
    public var violations: Int
    /// The first violation, in full; nil when there was none.
    public var firstViolation: String?
    public var longestUnavailableSeconds: Double
    /// Expectations of the scenario that were not met, each in one sentence.
    public var unmetExpectations: [String]
    /// Violations of a kind the scenario expected (it broke the code on purpose): they do not
    /// fail the run.
    public var expectedViolations: Int

    /// `expected` names the kinds of violation the scenario expects; when it names any, a run
    /// in which the checker finds none of them has an unmet expectation.
    public init(scenario: String, seed: UInt64, backend: String, durationSeconds: Double, faults: Int, history: [HistoryEntry],
                violations: [Violation], unmetExpectations: [String] = [], expected: Set<Violation.Kind> = []) {
        self.scenario = scenario
        self.seed = seed
        self.backend = backend
        self.durationSeconds = durationSeconds
        self.faults = faults
        var counts = (ok: 0, refused: 0, failed: 0, unknown: 0)
        for entry in history {
            switch entry.outcome {
            case .ok: counts.ok += 1
            case .refused: counts.refused += 1
            case .failed: counts.failed += 1
            case .unknown: counts.unknown += 1
            }
        }
        (ok, refused, failed, unknown) = counts
        lostAcknowledged = violations.filter { $0.kind == .lostAcknowledged }.count
        self.violations = violations.count
        firstViolation = violations.min { ($0.timeMillis, $0.description) < ($1.timeMillis, $1.description) }?.description
        longestUnavailableSeconds = Double(Self.longestUnavailableMillis(history)) / 1_000
        expectedViolations = violations.filter { expected.contains($0.kind) }.count
        var unmet = unmetExpectations
        if !expected.isEmpty && expectedViolations == 0 {
            let names = expected.map(\.rawValue).sorted().joined(separator: " or ")
            unmet.append("the checker found no \(names) violation, which the scenario's test switches should cause")
        }
        self.unmetExpectations = unmet
    }

    /// The run kept every invariant it was meant to keep and met every expectation.
    public var passed: Bool { violations == expectedViolations && unmetExpectations.isEmpty }

    /// The longest time the cluster could not take a create, from the history: a window opens
    /// when a create ends without an answer (failed or unknown) and closes when a create
    /// invoked after it is answered (accepted or refused: the controller decided again). A
    /// window still open at the end closes at the last completion.
    public static func longestUnavailableMillis(_ history: [HistoryEntry]) -> UInt64 {
        let creates = history.filter { if case .createPartition = $0.action { true } else { false } }
            .sorted { ($0.invokedMillis, $0.completedMillis) < ($1.invokedMillis, $1.completedMillis) }
        guard let end = creates.map(\.completedMillis).max() else { return 0 }
        var longest: UInt64 = 0
        var openedAt: UInt64?
        for entry in creates {
            switch entry.outcome {
            case .failed, .unknown:
                if openedAt == nil { openedAt = entry.invokedMillis }
            case .ok, .refused:
                guard let start = openedAt, entry.invokedMillis >= start else { continue }
                longest = max(longest, entry.completedMillis >= start ? entry.completedMillis - start : 0)
                openedAt = nil
            }
        }
        if let start = openedAt { longest = max(longest, end >= start ? end - start : 0) }
        return longest
    }
}

/// The results of a `run` as a table, one row per scenario and seed, with the first
/// violation or unmet expectation of each failing run below it.
public enum RunTable {
    public static func render(_ results: [RunResult]) -> String {
        let header = ["SCENARIO", "SEED", "BACKEND", "SECONDS", "FAULTS", "OK", "REFUSED", "FAILED", "UNKNOWN", "LOST", "VIOLATIONS", "UNAVAILABLE", "RESULT"]
        let rows = results.map { result in
            [result.scenario, String(result.seed), result.backend, seconds(result.durationSeconds), String(result.faults), String(result.ok),
             String(result.refused), String(result.failed), String(result.unknown), String(result.lostAcknowledged),
             String(result.violations), seconds(result.longestUnavailableSeconds) + " s", result.passed ? "pass" : "FAIL"]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[index] - cell.count))
            }.joined(separator: "  ")
        }
        var lines = [line(header)] + rows.map(line)
        for result in results where !result.passed || result.expectedViolations > 0 {
            if let first = result.firstViolation {
                lines.append("\(result.scenario) seed \(result.seed): first violation\(result.passed ? " (expected)" : ""): \(first)")
            }
            for unmet in result.unmetExpectations { lines.append("\(result.scenario) seed \(result.seed): expectation not met: \(unmet)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func seconds(_ value: Double) -> String {
        let tenths = (value * 10).rounded()
        return "\(Int(tenths) / 10).\(Int(tenths) % 10)"
    }
}
