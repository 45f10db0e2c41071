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
        .executable(name: "blade-agent", targets: ["blade-agent"]),
        .executable(name: "clusterctl", targets: ["clusterctl"]),
        .executable(name: "wire-bench", targets: ["wire-bench"]),
        .executable(name: "placement-bench", targets: ["placement-bench"]),
        .executable(name: "nestor-harness", targets: ["nestor-harness"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // The architecture of Intel VMX as values: fields, encodings, MSRs, exit reasons, bitmaps.
        .target(name: "VMX", swiftSettings: strict),
        // L0: blades, LPARs, isolation, the nested-VMX core and the backend protocol.
        .target(
            name: "Partitioner",
            dependencies: ["VMX", "Sizes", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Deterministic simulated backend: virtual time, cost models, L1 VMM and workload models.
        .target(name: "SimBackend", dependencies: ["VMX", "Partitioner", "Sizes", "SeededRandom"], swiftSettings: strict),
        // One deterministic generator (SplitMix64) for everything that must replay from a seed.
        .target(name: "SeededRandom", swiftSettings: strict),
        // How Nestor's processes treat the signals their children and peers cause.
        .target(name: "Supervision", swiftSettings: strict),
        // How the executables run their commands and report input errors.
        .target(
            name: "CommandLineSupport",
            dependencies: [
                "Supervision", "InputText",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        // The blade agent's decisions as a pure value: inputs in, directives out.
        .target(name: "AgentCore", dependencies: ["Partitioner", "Sizes"], path: "Agents/AgentCore", swiftSettings: strict),
        // The blade agent's commands as a library (spec files, benchmarks, reports).
        .target(
            name: "BladeAgentKit",
            dependencies: [
                "VMX", "Partitioner", "AgentCore", "SimBackend", "Sizes", "Wire", "WireCodec", "Protos", "KVMBackend", "Supervision", "InputText",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Agents/BladeAgentKit",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "blade-agent",
            dependencies: [
                "BladeAgentKit", "CommandLineSupport", "ClusterCore", "Partitioner", "Sizes", "Wire", "WireCodec", "KVMBackend",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Agents/BladeAgent",
            swiftSettings: strict
        ),
        // The wire format: tagged-field codec, frames and the connection preamble (NIOCore only).
        .target(
            name: "WireCodec",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            path: "Sources/Wire/Codec",
            swiftSettings: strict
        ),
        // The protocol's messages and their catalogue (Protos/SPEC.md is normative).
        .target(
            name: "Protos",
            dependencies: ["WireCodec", .product(name: "NIOCore", package: "swift-nio")],
            path: "Protos",
            exclude: ["SPEC.md", "README.md", "Schema"],
            swiftSettings: strict
        ),
        // The transport: mutual TLS 1.3, framing, requests, events, streams, keep-alive, roles.
        .target(
            name: "Wire",
            dependencies: [
                "WireCodec", "Protos", "NestorPKI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Wire/Transport",
            swiftSettings: strict
        ),
        // The cluster's PKI: a CA and certificates carrying Nestor identities (no external tools).
        .target(
            name: "NestorPKI",
            dependencies: [
                "WireCodec",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            path: "Sources/PKI",
            swiftSettings: strict
        ),
        // The command-line client.
        .executableTarget(
            name: "clusterctl",
            dependencies: [
                "NestorPKI", "WireCodec", "CommandLineSupport", "Wire", "Protos", "ClusterCore", "Sizes",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Measures the wire protocol (and serves it for the transport's end-to-end tests).
        .target(
            name: "WireBenchKit",
            dependencies: [
                "Wire", "WireCodec", "Protos", "NestorPKI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/WireBench/Kit",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "wire-bench",
            dependencies: [
                "WireBenchKit", "Wire", "WireCodec", "NestorPKI", "Supervision",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/WireBench/Main",
            swiftSettings: strict
        ),
        // The decoder's fuzz target (deploy/fuzz.sh builds it with libFuzzer), or a replayer.
        .executableTarget(
            name: "wire-fuzz",
            dependencies: ["WireCodec", "Protos", .product(name: "NIOCore", package: "swift-nio")],
            path: "Sources/WireFuzz",
            swiftSettings: strict
        ),
        // A C layer over <linux/kvm.h> (ioctl numbers, ioctl(2), kvm_run accessors); Linux only.
        .target(name: "CKVM", path: "Sources/CKVM"),
        // The guest ABI's headers (Agents/Guests/abi/include), shared by the guest images and L0.
        .target(name: "CGuestABI", path: "Agents/Guests/abi"),
        // The KVM API in Swift: the system, VMs (memory slots, dirty log), vCPUs (run, registers).
        .target(name: "KVM", dependencies: ["CKVM"], swiftSettings: strict),
        // The partitioner's backend on /dev/kvm: LPARs as KVM virtual machines with L0's devices.
        .target(name: "KVMBackend", dependencies: ["KVM", "CKVM", "CGuestABI", "Partitioner", "VMX", "Supervision"], swiftSettings: strict),
        // Placement: filters, scores, failure domains and N+1 admission (pure, no I/O).
        .target(name: "Placement", swiftSettings: strict),
        .executableTarget(
            name: "placement-bench",
            dependencies: ["Placement", "SeededRandom", "CommandLineSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/PlacementBench",
            swiftSettings: strict
        ),
        .testTarget(name: "PlacementTests", dependencies: ["Placement", "SeededRandom"]),
        // The controller's logic as pure values: model, commands, liveness, reconciliation.
        .target(name: "ClusterCore", dependencies: ["Placement", "Sizes", "InputText"], swiftSettings: strict),
        // Sizes as people type them: one grammar for flags, config files and spec files.
        .target(name: "Sizes", dependencies: ["InputText"], swiftSettings: strict),
        // Values people typed, echoed back in messages: escaped and bounded.
        .target(name: "InputText", swiftSettings: strict),
        .testTarget(name: "InputTextTests", dependencies: ["InputText"]),
        // Durable cluster state: SQLite (WAL) through GRDB, versioned migrations, CAS commits.
        .target(
            name: "ClusterStore",
            dependencies: ["ClusterCore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strict
        ),
        // The cluster controller: the store, the mTLS API, leases and reconciliation.
        .target(
            name: "ControllerKit",
            dependencies: [
                "ClusterCore", "ClusterStore", "Wire", "WireCodec", "Protos", "NestorPKI", "InputText",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Controller/ControllerKit",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "cluster-controller",
            dependencies: [
                "ControllerKit", "ClusterCore", "Placement", "Wire", "WireCodec", "CommandLineSupport", "Sizes",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Controller/Main",
            swiftSettings: strict
        ),
        .testTarget(name: "ClusterCoreTests", dependencies: ["ClusterCore", "Placement", "Sizes"]),
        .testTarget(name: "KVMBackendTests", dependencies: ["KVM", "KVMBackend", "CGuestABI", "blade-agent"]),
        .testTarget(
            name: "ClusterE2ETests",
            dependencies: [
                "Wire", "WireCodec", "Protos", "NestorPKI", "cluster-controller", "blade-agent", "clusterctl",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "ClusterStoreTests", dependencies: ["ClusterStore", "ClusterCore", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "VMXTests", dependencies: ["VMX"], resources: [.copy("Fixtures")]),
        .testTarget(name: "PartitionerTests", dependencies: ["VMX", "Partitioner", "Sizes", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "SimBackendTests", dependencies: ["VMX", "Partitioner", "SimBackend", "Sizes"]),
        .testTarget(
            name: "WireTests",
            dependencies: [
                "WireCodec", "Protos",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            resources: [.copy("Golden")]
        ),
        .testTarget(
            name: "NestorPKITests",
            dependencies: [
                "NestorPKI", "WireCodec", "clusterctl",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .testTarget(
            name: "WireTransportTests",
            dependencies: [
                "Wire", "WireCodec", "Protos", "NestorPKI", "WireBenchKit", "wire-bench",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .testTarget(name: "AgentCoreTests", dependencies: ["AgentCore", "Partitioner", "SeededRandom"]),
        // The failure-injection harness: observations, history and the independent invariant
        // checker (it imports none of the code it judges).
        .target(name: "FaultHarness", dependencies: ["SeededRandom"], path: "Sources/FaultHarness/Core", swiftSettings: strict),
        // The harness's fault proxy: a TCP proxy (NIO) that delays, limits, slices, holds and cuts a link.
        .target(
            name: "FaultProxy",
            dependencies: [
                "FaultHarness", "SeededRandom",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Sources/FaultHarness/Proxy",
            swiftSettings: strict
        ),
        // Scenario files: the cluster, workload, timed faults and expectations of one run.
        .target(
            name: "FaultScenario",
            dependencies: ["FaultHarness", "Sizes", "SeededRandom", "CommandLineSupport", .product(name: "Yams", package: "Yams")],
            path: "Sources/FaultHarness/Scenario",
            swiftSettings: strict
        ),
        // The harness against real processes: a cluster on loopback, the nemesis, the workload's
        // clients and the observer that samples the agents and the store for the checker.
        .target(
            name: "FaultRunner",
            dependencies: [
                "FaultHarness", "FaultScenario", "FaultProxy", "Wire", "WireCodec", "Protos", "NestorPKI", "Sizes", "Supervision",
                "Partitioner", "ClusterCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/FaultHarness/Runner",
            swiftSettings: strict
        ),
        // The deterministic cluster simulation: the controller's and the agents' pure cores
        // over a simulated network, store and clock, one seed per run.
        .target(
            name: "FaultSimulation",
            dependencies: ["FaultHarness", "FaultScenario", "ClusterCore", "Placement", "AgentCore", "Partitioner", "SeededRandom"],
            path: "Sources/FaultHarness/Simulation",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "nestor-harness",
            dependencies: ["FaultScenario", "FaultRunner", "FaultSimulation", "FaultHarness", "Partitioner", "CommandLineSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/FaultHarness/Main",
            swiftSettings: strict
        ),
        .testTarget(
            name: "FaultHarnessTests",
            dependencies: [
                "FaultHarness", "FaultProxy", "FaultScenario", "FaultSimulation", "SeededRandom", "nestor-harness", "cluster-controller", "blade-agent",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "BladeAgentTests", dependencies: ["BladeAgentKit", "SimBackend", "blade-agent"]),
    ]
)
