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
        .testTarget(name: "VMXTests", dependencies: ["VMX"], resources: [.copy("Fixtures")]),
        .testTarget(name: "PartitionerTests", dependencies: ["VMX", "Partitioner"]),
    ]
)
