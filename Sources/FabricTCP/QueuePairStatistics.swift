/// A snapshot of a queue pair's counters.
public struct QueuePairStatistics: Hashable, Sendable, Codable {
    public var framesSent: Int
    public var framesReceived: Int
    /// Frames in packets of the profile's MTU.
    public var packetsSent: Int
    public var packetsReceived: Int
    public var bytesSent: Int
    public var bytesReceived: Int
    public var receiverNotReadyNaksSent: Int
    public var receiverNotReadyNaksReceived: Int
    public var outOfSequenceDropped: Int
    public var remoteAccessErrors: Int
    /// Transport retries: requests sent again after a lost packet.
    public var retries: Int
    /// Faults the emulator's fault script injected (docs/emulation.md).
    public var faultsInjected: Int
    /// System calls the engine made on the socket: send(2) of one buffer,
    /// sendmsg(2) of several pieces, and reads (recv(2) and readv(2), those
    /// that found nothing included). Per message, they are the software
    /// NIC's main cost for small messages (fabric-perf prints them).
    public var sendCalls: Int
    public var sendmsgCalls: Int
    public var receiveCalls: Int
}
