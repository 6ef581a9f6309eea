import FabricCore
import Synchronization

/// Where a rank's part of a window is, as the other ranks reach it.
struct WindowTarget: Sendable {
    /// The world rank (the connection to use).
    let worldRank: Int
    let remote: RemoteMemory
    let size: Int
    let displacementUnit: Int
    /// The rank's control words (`WindowControl`).
    let control: RemoteMemory
}

/// The words of a rank's control block, registered beside its window
/// memory: its lock for passive-target epochs, and the lock that makes
/// accumulates done as READ-modify-WRITE atomic per element.
enum WindowControl {
    static let bytes = 64
    /// Shared holders count up by one; an exclusive holder sets `exclusive`.
    static let epochLockOffset = 0
    /// Free (0), or held by world rank r (r + 1).
    static let accumulateLockOffset = 8
    static let exclusive: UInt64 = 1 << 62
}

/// The epochs a rank has open on a window, and the operations it posted
/// that no flush has collected yet.
struct WindowEpochs {
    /// Between fences (opened by a fence, closed by one with `noSucceed`).
    var fenceOpen = false
    /// Passive-target locks held, by target rank.
    var locks: [Int: WindowLock] = [:]
    var lockAll = false
    /// The targets of an open access epoch (MPI_Win_start).
    var accessGroup: Set<Int>?
    /// The origins of an open exposure epoch (MPI_Win_post).
    var exposureGroup: [Int]?
    /// Tickets of posted operations, by target rank.
    var pending: [[Int]]
    /// Packed copies of spread-out origin data (their addresses), freed
    /// once flushed.
    var staging: [UInt] = []
    /// Dynamic windows: the ranges each target had attached when this rank
    /// last read its table; forgotten at every synchronisation, when
    /// targets may have attached or detached since.
    var attachedRanges: [Int: [AttachedRange]] = [:]

    init(ranks: Int) { pending = Array(repeating: [], count: ranks) }

    /// Targets of a dynamic window may attach and detach between
    /// synchronisations: their lists are read again after one (of every
    /// target, or of `target`).
    mutating func forgetAttachedRanges(of target: Int? = nil) {
        if let target { attachedRanges[target] = nil } else if !attachedRanges.isEmpty { attachedRanges.removeAll() }
    }

    func covers(_ target: Int) -> Bool {
        fenceOpen || lockAll || locks[target] != nil || accessGroup?.contains(target) == true
    }
}

/// One window on this rank: its memory, every rank's part as this rank
/// reaches it, and its epochs. Immutable but for `epochs`.
final class WindowState: Sendable {
    let window: Window
    /// A duplicate of the communicator the window was made on: fences and
    /// the post/start/complete/wait notices travel on it.
    let communicator: Communicator
    nonisolated(unsafe) let base: UnsafeMutableRawPointer?
    let size: Int
    let displacementUnit: Int
    let flavor: WindowFlavor
    let targets: [WindowTarget]
    nonisolated(unsafe) let control: UnsafeMutableRawPointer
    let registrations: [WindowMemoryRegistration]
    /// A dynamic window's ranges attached on this rank.
    let attachments: AttachmentTable?
    /// A shared window's memory, as this process maps it.
    let segment: SharedSegment?
    let epochs: Mutex<WindowEpochs>

    init(
        window: Window, communicator: Communicator, base: UnsafeMutableRawPointer?, size: Int, displacementUnit: Int, flavor: WindowFlavor,
        targets: [WindowTarget], control: UnsafeMutableRawPointer, registrations: [WindowMemoryRegistration], attachments: AttachmentTable?,
        segment: SharedSegment?
    ) {
        self.window = window
        self.communicator = communicator
        self.base = base
        self.size = size
        self.displacementUnit = displacementUnit
        self.flavor = flavor
        self.targets = targets
        self.control = control
        self.registrations = registrations
        self.attachments = attachments
        self.segment = segment
        epochs = Mutex(WindowEpochs(ranks: targets.count))
    }

    var attributes: WindowAttributes {
        WindowAttributes(base: base, size: size, displacementUnit: displacementUnit, flavor: flavor, isUnifiedModel: true, communicator: communicator)
    }
}

/// This runtime's windows by number.
final class WindowTable: Sendable {
    private let windows = Mutex<(next: Int, byID: [Int: WindowState])>((0, [:]))

    func nextWindow() -> Window {
        windows.withLock { table in
            defer { table.next += 1 }
            return Window(id: table.next)
        }
    }

    func add(_ state: WindowState) {
        windows.withLock { $0.byID[state.window.id] = state }
    }

    func state(of window: Window) throws(MPIError) -> WindowState {
        guard let state = windows.withLock({ $0.byID[window.id] }) else {
            throw MPIError(.invalidWindow, "\(window) is not a window of this runtime, or is freed")
        }
        return state
    }

    func remove(_ window: Window) {
        _ = windows.withLock { $0.byID.removeValue(forKey: window.id) }
    }
}
