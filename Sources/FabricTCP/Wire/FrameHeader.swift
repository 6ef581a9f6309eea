/// The frame header of the software NIC's wire protocol, version 1.
/// docs/wire-protocol.md is the specification; this file is its one
/// implementation, and the only place that knows the byte layout.
///
///     offset size field
///      0     1   version          (1)
///      1     1   opcode           (WireOpcode)
///      2     2   flags            (WireFlags)
///      4     4   length           payload bytes that follow; for READ_REQUEST
///                                 the number of bytes asked for (no payload)
///      8     4   sequence         request sequence number (PSN); in a
///                                 response or NAK, the PSN it answers
///     12     4   acknowledge      every request of the peer with a lower
///                                 PSN was accepted (cumulative)
///     16     8   remote address   WRITE, READ, atomics
///     24     4   remote key       WRITE, READ, atomics
///     28     4   immediate        *_WITH_IMMEDIATE; NAK: the syndrome
///
/// All fields little-endian. Sequence numbers are 32-bit and wrap.

enum WireOpcode: UInt8 {
    case send = 1
    case sendWithImmediate = 2
    case write = 3
    case writeWithImmediate = 4
    case readRequest = 5
    case readResponse = 6
    case fetchAndAdd = 7
    case compareAndSwap = 8
    case atomicResponse = 9
    case acknowledge = 10
    case negativeAcknowledge = 11
    case disconnect = 12

    /// Requests carry a sequence number and are acknowledged.
    var isRequest: Bool {
        switch self {
        case .send, .sendWithImmediate, .write, .writeWithImmediate, .readRequest, .fetchAndAdd, .compareAndSwap:
            return true
        default:
            return false
        }
    }
}

struct WireFlags: OptionSet {
    var rawValue: UInt16
    /// The sender would like an acknowledgement soon (a signalled request or
    /// a filling send queue): the receiver does not wait for traffic to ride on.
    static let acknowledgeRequested = WireFlags(rawValue: 1 << 0)
    static let known: WireFlags = [.acknowledgeRequested]
}

/// Size of an atomic request's payload: operand 1 (add or compare), operand 2 (swap).
let atomicRequestPayload = 16
/// Size of an atomic response's payload: the value found before the operation.
let atomicResponsePayload = 8

/// Why a frame header was refused.
enum FrameError: Error, Equatable {
    case unsupportedVersion(UInt8)
    case unknownOpcode(UInt8)
    case unknownFlags(UInt16)
    case lengthTooLarge(UInt32)
    case lengthNotAllowed(opcode: WireOpcode, length: UInt32)

    var detail: FabricCoreDetail {
        switch self {
        case .unsupportedVersion: return .unsupportedVersion
        case .unknownOpcode: return .unknownOpcode
        case .unknownFlags: return .malformedFrame
        case .lengthTooLarge: return .oversizedFrame
        case .lengthNotAllowed: return .malformedFrame
        }
    }
}

import FabricCore
typealias FabricCoreDetail = CompletionDetail

struct FrameHeader: Equatable {
    static let size = 32
    static let version: UInt8 = 1

    var opcode: WireOpcode
    var flags: WireFlags = []
    var length: UInt32 = 0
    var sequence: UInt32 = 0
    var acknowledge: UInt32 = 0
    var remoteAddress: UInt64 = 0
    var remoteKey: UInt32 = 0
    var immediate: UInt32 = 0

    /// Bytes that follow the header on the wire.
    var payloadLength: Int {
        opcode == .readRequest ? 0 : Int(length)
    }

    /// Writes the header at `destination` (32 bytes).
    @inline(__always)
    func encode(to destination: UnsafeMutableRawPointer) {
        destination.storeBytes(of: FrameHeader.version, toByteOffset: 0, as: UInt8.self)
        destination.storeBytes(of: opcode.rawValue, toByteOffset: 1, as: UInt8.self)
        destination.storeBytes(of: flags.rawValue.littleEndian, toByteOffset: 2, as: UInt16.self)
        destination.storeBytes(of: length.littleEndian, toByteOffset: 4, as: UInt32.self)
        destination.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt32.self)
        destination.storeBytes(of: acknowledge.littleEndian, toByteOffset: 12, as: UInt32.self)
        destination.storeBytes(of: remoteAddress.littleEndian, toByteOffset: 16, as: UInt64.self)
        destination.storeBytes(of: remoteKey.littleEndian, toByteOffset: 24, as: UInt32.self)
        destination.storeBytes(of: immediate.littleEndian, toByteOffset: 28, as: UInt32.self)
    }

    /// Rewrites only the acknowledge field of an encoded header (the ack is
    /// filled in as late as possible, when the frame goes out).
    @inline(__always)
    static func patchAcknowledge(_ acknowledge: UInt32, at destination: UnsafeMutableRawPointer) {
        destination.storeBytes(of: acknowledge.littleEndian, toByteOffset: 12, as: UInt32.self)
    }

    /// Reads and validates a header from 32 bytes at `source` (any alignment).
    /// `maxMessage` bounds every length.
    static func decode(from source: UnsafeRawPointer, maxMessage: Int) -> Result<FrameHeader, FrameError> {
        let version = source.load(fromByteOffset: 0, as: UInt8.self)
        guard version == FrameHeader.version else { return .failure(.unsupportedVersion(version)) }
        let rawOpcode = source.load(fromByteOffset: 1, as: UInt8.self)
        guard let opcode = WireOpcode(rawValue: rawOpcode) else { return .failure(.unknownOpcode(rawOpcode)) }
        let flags = WireFlags(rawValue: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        guard WireFlags.known.isSuperset(of: flags) else { return .failure(.unknownFlags(flags.rawValue)) }
        let length = UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        var header = FrameHeader(opcode: opcode, flags: flags, length: length)
        header.sequence = UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        header.acknowledge = UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        header.remoteAddress = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        header.remoteKey = UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 24, as: UInt32.self))
        header.immediate = UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 28, as: UInt32.self))

        switch opcode {
        case .send, .sendWithImmediate, .write, .writeWithImmediate, .readRequest, .readResponse:
            guard Int(length) <= maxMessage else { return .failure(.lengthTooLarge(length)) }
        case .fetchAndAdd, .compareAndSwap:
            guard Int(length) == atomicRequestPayload else { return .failure(.lengthNotAllowed(opcode: opcode, length: length)) }
        case .atomicResponse:
            guard Int(length) == atomicResponsePayload else { return .failure(.lengthNotAllowed(opcode: opcode, length: length)) }
        case .acknowledge, .negativeAcknowledge, .disconnect:
            guard length == 0 else { return .failure(.lengthNotAllowed(opcode: opcode, length: length)) }
        }
        return .success(header)
    }
}

/// The syndrome of a NAK: what went wrong, in the immediate field.
/// Low byte: CompletionStatus to report; next two bytes: CompletionDetail.
enum NakSyndrome {
    static func encode(status: CompletionStatus, detail: CompletionDetail) -> UInt32 {
        UInt32(status.rawValue) | (UInt32(detail.rawValue) << 8)
    }

    static func decode(_ value: UInt32) -> (CompletionStatus, CompletionDetail)? {
        guard let status = CompletionStatus(rawValue: UInt8(truncatingIfNeeded: value)),
              let detail = CompletionDetail(rawValue: UInt16(truncatingIfNeeded: value >> 8)),
              value >> 24 == 0
        else { return nil }
        // Only the statuses a responder may report.
        switch status {
        case .remoteAccessError, .remoteInvalidRequest, .remoteOperationError, .receiverNotReadyRetryExceeded:
            return (status, detail)
        default:
            return nil
        }
    }
}
