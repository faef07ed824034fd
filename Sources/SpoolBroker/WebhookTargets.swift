import Foundation
import NIOPosix
import SpoolCore

#if canImport(Glibc)
import Glibc
#endif

/// Which webhook URLs the broker calls: public addresses only, unless the configuration allows
/// loopback or names private networks. Link-local addresses (cloud metadata services) never.
///
/// A URL is checked when it is submitted (a clear 400) and again before each delivery, since
/// what a name resolves to can change in between.
struct WebhookTargets: Sendable {
    var allowLoopback: Bool
    var allowedNetworks: [IPNetwork]

    /// The kinds of address a host can resolve to.
    enum AddressKind: String, Equatable {
        case `public`, loopback, `private`
        case linkLocal = "link-local"
        case unspecified, multicast, reserved
    }

    /// Checks `url` and every address its host resolves to; the error says what is wrong and how to allow it.
    func check(_ url: String, param: String) async throws -> URL {
        let (parsed, host) = try parse(url, param: param)
        try await checkAddresses(of: host, param: param)
        return parsed
    }

    /// The URL and its host, if it is an http(s) URL with a host: what can be checked without resolving it.
    func parse(_ url: String, param: String) throws -> (url: URL, host: String) {
        guard url.unicodeScalars.count <= 2048, !url.utf8.contains(0) else {
            throw SpoolError.invalidRequest("'\(param)' must be a URL of at most 2048 characters.", code: "invalid_webhook_url", param: param)
        }
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            ["http", "https"].contains(scheme), let host = components.host, !host.isEmpty, let parsed = components.url
        else {
            throw SpoolError.invalidRequest(
                "'\(param)' must be an http:// or https:// URL with a host, got '\(url)'.", code: "invalid_webhook_url", param: param)
        }
        return (parsed, host)
    }

    /// Resolves `host` and refuses it when any of its addresses is one the broker will not call.
    func checkAddresses(of host: String, param: String) async throws {
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let addresses = try await Self.resolve(bareHost)
        guard !addresses.isEmpty else {
            throw SpoolError.invalidRequest("'\(param)': the host '\(host)' does not resolve.", code: "invalid_webhook_url", param: param)
        }
        for address in addresses {
            if let refusal = refusal(for: address) {
                throw SpoolError.invalidRequest(
                    // The address itself is not shown: an error must not map the private network for its sender.
                    "'\(param)': the host '\(host)' resolves to \(refusal)", code: "webhook_target_refused", param: param)
            }
        }
    }

    /// Why the broker will not call `address`, or nil when it will.
    func refusal(for address: [UInt8]) -> String? {
        switch Self.kind(of: address) {
        case .public:
            return nil
        case .loopback:
            return allowLoopback ? nil : "a loopback address; webhooks to this host are refused (SPOOL_WEBHOOK_ALLOW_LOOPBACK=1 allows them)."
        case .private:
            if allowedNetworks.contains(where: { $0.contains(address) }) { return nil }
            return "a private address; webhooks to private networks are refused unless SPOOL_WEBHOOK_ALLOW_NETWORKS names the range."
        case .linkLocal:
            return "a link-local address (where cloud metadata services live); webhooks there are always refused."
        case .unspecified, .multicast, .reserved:
            return "an address no webhook can be delivered to (\(Self.kind(of: address).rawValue))."
        }
    }

    static func kind(of address: [UInt8]) -> AddressKind {
        if address.count == 16 {
            let v6 = address
            if v6 == [UInt8](repeating: 0, count: 15) + [1] { return .loopback }
            if v6.allSatisfy({ $0 == 0 }) { return .unspecified }
            // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): judge the IPv4 address inside.
            if v6[0..<10].allSatisfy({ $0 == 0 }) && v6[10] == 0xff && v6[11] == 0xff { return kind(of: Array(v6[12...])) }
            if v6[0...11] == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0][...] { return kind(of: Array(v6[12...])) }
            // AWS's IPv6 metadata service sits in the private range; it is refused like link-local.
            if v6 == [0xfd, 0x00, 0x0e, 0xc2] + [UInt8](repeating: 0, count: 10) + [0x02, 0x54] { return .linkLocal }
            if v6[0] == 0xfe && v6[1] & 0xc0 == 0x80 { return .linkLocal }
            if v6[0] & 0xfe == 0xfc { return .private }
            if v6[0] == 0xff { return .multicast }
            return .public
        }
        guard address.count == 4 else { return .reserved }
        let (a, b) = (address[0], address[1])
        switch a {
        case 0: return .unspecified
        case 127: return .loopback
        case 10: return .private
        case 169 where b == 254: return .linkLocal
        case 172 where (16...31).contains(b): return .private
        case 192 where b == 168: return .private
        case 100 where (64...127).contains(b): return .private  // carrier-grade NAT
        case 198 where b == 18 || b == 19: return .private  // benchmarking networks
        case 224...239: return .multicast
        case 240...255: return .reserved
        default: return .public
        }
    }

    /// The host's addresses: a literal as is, a name through getaddrinfo on a blocking-I/O thread.
    static func resolve(_ host: String) async throws -> [[UInt8]] {
        if let literal = IPNetwork.parseAddress(host) { return [literal] }
        return try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var results: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &results) == 0, let first = results else { return [] }
            defer { freeaddrinfo(first) }
            var addresses: [[UInt8]] = []
            var current: UnsafeMutablePointer<addrinfo>? = first
            while let entry = current {
                if let socketAddress = entry.pointee.ai_addr {
                    if entry.pointee.ai_family == AF_INET {
                        socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                            var raw = pointer.pointee.sin_addr
                            addresses.append(withUnsafeBytes(of: &raw) { Array($0) })
                        }
                    } else if entry.pointee.ai_family == AF_INET6 {
                        socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                            var raw = pointer.pointee.sin6_addr
                            addresses.append(withUnsafeBytes(of: &raw) { Array($0) })
                        }
                    }
                }
                current = entry.pointee.ai_next
            }
            return addresses
        }
    }

    static func format(_ address: [UInt8]) -> String {
        if address.count == 4 { return address.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: address.count, by: 2).map { String(UInt16(address[$0]) << 8 | UInt16(address[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }
}

/// A network in CIDR form, such as `10.0.0.0/8` or `fd12:3456::/48`.
struct IPNetwork: Sendable, Equatable {
    let address: [UInt8]
    let prefixLength: Int

    init?(cidr: String) {
        let parts = cidr.split(separator: "/", maxSplits: 1).map(String.init)
        guard let address = Self.parseAddress(parts[0]) else { return nil }
        let prefix = parts.count == 2 ? Int(parts[1]) : address.count * 8
        guard let prefix, (0...(address.count * 8)).contains(prefix) else { return nil }
        self.address = address
        self.prefixLength = prefix
    }

    func contains(_ other: [UInt8]) -> Bool {
        guard other.count == address.count else { return false }
        var remaining = prefixLength
        for index in address.indices where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - bits))
            if address[index] & mask != other[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    /// The bytes of an IPv4 or IPv6 literal, or nil for anything else.
    static func parseAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}
