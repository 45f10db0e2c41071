// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Nestor",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "VMX", targets: ["VMX"]),
        .library(name: "Partitioner", targets: ["Partitioner"]),
        .library(name: "SimBackend", targets: ["SimBackend"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // The architecture of Intel VMX as values: fields, encodings, MSRs, exit reasons, bitmaps.
        .target(name: "VMX", swiftSettings: strict),
        // L0: blades, LPARs, isolation, the nested-VMX core and the backend protocol.
        .target(
            name: "Partitioner",
            dependencies: ["VMX", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Deterministic simulated backend: virtual time, cost models, L1 VMM and workload models.
        .target(name: "SimBackend", dependencies: ["VMX", "Partitioner"], swiftSettings: strict),
        .testTarget(name: "VMXTests", dependencies: ["VMX"], resources: [.copy("Fixtures")]),
        .testTarget(name: "PartitionerTests", dependencies: ["VMX", "Partitioner"]),
        .testTarget(name: "SimBackendTests", dependencies: ["VMX", "Partitioner", "SimBackend"]),
    ]
)
