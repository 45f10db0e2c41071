import Foundation

/// The figures as a table or as JSON.
public enum BenchReport {
    public static func json(nestor: BenchFigures, grpc: BenchFigures?) -> String {
        var object: [String: Any] = dictionary(nestor)
        if let grpc {
            object["grpc"] = dictionary(grpc)
            object["rttRatioVsGrpc"] = rounded(nestor.rttPerSecond / grpc.rttPerSecond, 3)
            object["p99RatioVsGrpc"] = rounded(nestor.p99Micros / grpc.p99Micros, 3)
            object["concurrentRatioVsGrpc"] = rounded(nestor.concurrentPerSecond / grpc.concurrentPerSecond, 3)
            object["bulkRatioVsGrpc"] = rounded(nestor.bulkMiBPerSecond / grpc.bulkMiBPerSecond, 3)
        }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    public static func table(nestor: BenchFigures, grpc: BenchFigures?) -> String {
        var lines = [pad("", 26) + pad("nestor", 14) + (grpc == nil ? "" : pad("grpc-swift 2", 14) + "ratio")]
        func row(_ name: String, _ key: KeyPath<BenchFigures, Double>, digits: Int) {
            var line = pad(name, 26) + pad(format(nestor[keyPath: key], digits), 14)
            if let grpc {
                line += pad(format(grpc[keyPath: key], digits), 14) + format(nestor[keyPath: key] / grpc[keyPath: key], 2) + "x"
            }
            lines.append(line)
        }
        row("round trips/s", \.rttPerSecond, digits: 0)
        row("p50 latency (us)", \.p50Micros, digits: 1)
        row("p99 latency (us)", \.p99Micros, digits: 1)
        row("16 concurrent, req/s", \.concurrentPerSecond, digits: 0)
        row("bulk stream (MiB/s)", \.bulkMiBPerSecond, digits: 0)
        return lines.joined(separator: "\n") + "\n"
    }

    static func dictionary(_ figures: BenchFigures) -> [String: Any] {
        ["rttPerSecond": rounded(figures.rttPerSecond, 1), "p50Micros": rounded(figures.p50Micros, 1),
         "p99Micros": rounded(figures.p99Micros, 1), "concurrentPerSecond": rounded(figures.concurrentPerSecond, 1),
         "bulkMiBPerSecond": rounded(figures.bulkMiBPerSecond, 1)]
    }

    static func rounded(_ value: Double, _ digits: Int) -> Double {
        let scale = pow(10, Double(digits))
        return (value * scale).rounded() / scale
    }

    static func format(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
