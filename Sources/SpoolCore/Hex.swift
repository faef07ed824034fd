extension Sequence<UInt8> {
    /// The bytes as lowercase hex. `String(format: "%02x")` per byte costs a Foundation format
    /// call each, which was 8% of the broker's CPU on a submit when every request hashed its key.
    public var lowercaseHex: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
