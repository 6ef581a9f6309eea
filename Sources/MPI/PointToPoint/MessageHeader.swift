/// The header in front of every point-to-point frame between two ranks: what
/// the frame is, the envelope MPI matches on (communicator context, source,
/// tag), the message's length, the sender's cookie for the answer, and the
/// eager slots the sender hands back. 32 bytes, little-endian; a rendezvous
/// request adds 16 bytes naming where the payload can be read.
///
///     0  kind      UInt8     eager, rendezvous request, rendezvous done,
///                            synchronous acknowledgement, credit
///     1  flags     UInt8     bit 0: the sender waits to hear of the match
///     2  credits   UInt16    eager slots the receiver of this frame may use again
///     4  context   UInt32    the communicator
///     8  tag       Int32
///    12  source    UInt32    the sender's rank in the communicator
///    16  length    UInt64    the message's length in bytes
///    24  cookie    UInt64    names the sender's operation in answers
///    32  address   UInt64    rendezvous request only: the payload's address
///    40  key       UInt32    ... and the remote key that reads it
///    44  reserved  UInt32    zero
///
/// A frame that breaks these rules comes from a peer this rank cannot talk
/// to any more: `decode` says what was wrong and the connection is failed.
struct MessageHeader: Equatable {
    enum Kind: UInt8 {
        /// Header and payload: the whole message.
        case eager = 1
        /// "Read the payload from here"; answered by `rendezvousDone`.
        case rendezvousRequest = 2
        /// The receiver has read the payload (cookie: the request's).
        case rendezvousDone = 3
        /// A synchronous eager send was matched (cookie: the send's).
        case synchronousAcknowledgement = 4
        /// Nothing but returned credits.
        case credit = 5
    }

    static let size = 32
    static let rendezvousSize = 48
    static let synchronousFlag: UInt8 = 1

    var kind: Kind
    var synchronous = false
    var credits: UInt16 = 0
    var context: UInt32 = 0
    var tag: Int32 = 0
    var source: UInt32 = 0
    var length: UInt64 = 0
    var cookie: UInt64 = 0
    /// Rendezvous requests only.
    var remoteAddress: UInt64 = 0
    var remoteKey: UInt32 = 0

    var encodedSize: Int { kind == .rendezvousRequest ? Self.rendezvousSize : Self.size }

    /// Writes the header at `destination`, which has room for `encodedSize` bytes.
    func encode(to destination: UnsafeMutableRawPointer) {
        destination.storeBytes(of: kind.rawValue, as: UInt8.self)
        destination.storeBytes(of: synchronous ? Self.synchronousFlag : 0, toByteOffset: 1, as: UInt8.self)
        destination.storeBytes(of: credits.littleEndian, toByteOffset: 2, as: UInt16.self)
        destination.storeBytes(of: context.littleEndian, toByteOffset: 4, as: UInt32.self)
        destination.storeBytes(of: tag.littleEndian, toByteOffset: 8, as: Int32.self)
        destination.storeBytes(of: source.littleEndian, toByteOffset: 12, as: UInt32.self)
        destination.storeBytes(of: length.littleEndian, toByteOffset: 16, as: UInt64.self)
        destination.storeBytes(of: cookie.littleEndian, toByteOffset: 24, as: UInt64.self)
        if kind == .rendezvousRequest {
            destination.storeBytes(of: remoteAddress.littleEndian, toByteOffset: 32, as: UInt64.self)
            destination.storeBytes(of: remoteKey.littleEndian, toByteOffset: 40, as: UInt32.self)
            destination.storeBytes(of: UInt32(0), toByteOffset: 44, as: UInt32.self)
        }
    }

    /// Reads the header of a frame of `frameLength` bytes at `source`,
    /// checking its structure: a known kind and flags, and a length that
    /// agrees with the frame's. (Context and source rank are checked by the
    /// matcher, which knows the communicators.)
    static func decode(_ frame: UnsafeRawPointer, frameLength: Int) throws(ProtocolViolation) -> MessageHeader {
        guard frameLength >= size else {
            throw ProtocolViolation("a frame of \(frameLength) bytes, shorter than the \(size)-byte header")
        }
        let kindByte = frame.loadUnaligned(as: UInt8.self)
        guard let kind = Kind(rawValue: kindByte) else {
            throw ProtocolViolation("a frame of unknown kind \(kindByte)")
        }
        let flags = frame.loadUnaligned(fromByteOffset: 1, as: UInt8.self)
        guard flags & ~synchronousFlag == 0 else {
            throw ProtocolViolation("a \(kind) frame with unknown flags 0x\(String(flags, radix: 16))")
        }
        var header = MessageHeader(kind: kind)
        header.synchronous = flags & synchronousFlag != 0
        header.credits = UInt16(littleEndian: frame.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        header.context = UInt32(littleEndian: frame.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        header.tag = Int32(littleEndian: frame.loadUnaligned(fromByteOffset: 8, as: Int32.self))
        header.source = UInt32(littleEndian: frame.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        header.length = UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        header.cookie = UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        switch kind {
        case .eager:
            guard header.length == UInt64(frameLength - size) else {
                throw ProtocolViolation("an eager frame of \(frameLength) bytes announcing \(header.length) payload bytes")
            }
        case .rendezvousRequest:
            guard frameLength == rendezvousSize else {
                throw ProtocolViolation("a rendezvous request of \(frameLength) bytes; it has \(rendezvousSize)")
            }
            header.remoteAddress = UInt64(littleEndian: frame.loadUnaligned(fromByteOffset: 32, as: UInt64.self))
            header.remoteKey = UInt32(littleEndian: frame.loadUnaligned(fromByteOffset: 40, as: UInt32.self))
        case .rendezvousDone, .synchronousAcknowledgement, .credit:
            guard frameLength == size else {
                throw ProtocolViolation("a \(kind) frame of \(frameLength) bytes; it has \(size)")
            }
        }
        if header.synchronous && kind != .eager {
            throw ProtocolViolation("a \(kind) frame marked synchronous (only eager frames are)")
        }
        return header
    }
}

/// What a peer sent that the protocol does not allow.
struct ProtocolViolation: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
