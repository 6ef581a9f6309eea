/// A key for values the program attaches to communicators
/// (MPI_Comm_create_keyval); the predefined ones are read-only.
public struct AttributeKey: Hashable, Sendable, CustomStringConvertible {
    let id: Int

    /// MPI_TAG_UB: the largest tag a message may carry.
    public static let tagUpperBound = AttributeKey(id: -1)
    /// MPI_UNIVERSE_SIZE: the ranks the job may have (this runtime starts
    /// no processes later, so the job's size).
    public static let universeSize = AttributeKey(id: -2)
    /// MPI_WTIME_IS_GLOBAL: whether clocks agree across ranks (0: no).
    public static let wallTimeIsGlobal = AttributeKey(id: -3)

    var isPredefined: Bool { id < 0 }

    public var description: String {
        switch id {
        case -1: return "MPI_TAG_UB"
        case -2: return "MPI_UNIVERSE_SIZE"
        case -3: return "MPI_WTIME_IS_GLOBAL"
        default: return "attribute key \(id)"
        }
    }
}

/// What a communicator's duplicate gets of an attribute (the key's copy
/// callback).
public enum AttributeCopy: Sendable {
    /// Not copied (MPI_COMM_NULL_COPY_FN).
    case none
    /// The same value (MPI_COMM_DUP_FN).
    case same
    /// The callback's answer, or not copied when it gives nil.
    case callback(@Sendable (_ parent: Communicator, _ key: AttributeKey, _ value: Int) -> Int?)
}

/// Names and attributes of this rank's communicators, by context. Values
/// are address-sized integers, as C's attribute values are. Callbacks run
/// outside the lock: they may call the runtime.
final class CommunicatorAttributes: @unchecked Sendable {  // all state under `lock`
    private struct Key {
        let copy: AttributeCopy
        let delete: (@Sendable (Communicator, AttributeKey, Int) -> Void)?
    }

    private let lock = ProgressLock()
    private var keys: [Int: Key] = [:]
    private var nextKey = 0
    private var values: [UInt32: [Int: Int]] = [:]
    private var names: [UInt32: String] = [0: "MPI_COMM_WORLD", 1: "MPI_COMM_SELF"]

    func makeKey(copy: AttributeCopy, delete: (@Sendable (Communicator, AttributeKey, Int) -> Void)?) -> AttributeKey {
        lock.lock()
        defer { lock.unlock() }
        nextKey += 1
        keys[nextKey] = Key(copy: copy, delete: delete)
        return AttributeKey(id: nextKey)
    }

    /// Forgets `key`; values set with it stay until deleted or their
    /// communicator is freed (MPI_Comm_free_keyval).
    func freeKey(_ key: AttributeKey) throws(MPIError) {
        lock.lock()
        defer { lock.unlock() }
        guard !key.isPredefined else { throw MPIError(.invalidArgument, "\(key) is predefined and cannot be freed") }
        guard keys.removeValue(forKey: key.id) != nil else { throw MPIError(.invalidArgument, "\(key) is not a key of this runtime, or freed") }
    }

    func set(_ value: Int, for key: AttributeKey, on communicator: Communicator) throws(MPIError) {
        let replaced = try withLock { () throws(MPIError) -> (Key, Int)? in
            guard !key.isPredefined else { throw MPIError(.invalidArgument, "\(key) is predefined: it cannot be set") }
            guard let known = keys[key.id] else { throw MPIError(.invalidArgument, "\(key) is not a key of this runtime, or freed") }
            let old = values[communicator.context, default: [:]].updateValue(value, forKey: key.id)
            return old.map { (known, $0) }
        }
        // Setting over a value deletes the old one first (MPI 3.1 §6.7.2).
        if let (known, old) = replaced { known.delete?(communicator, key, old) }
    }

    func value(for key: AttributeKey, on communicator: Communicator) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        return values[communicator.context]?[key.id]
    }

    func delete(_ key: AttributeKey, on communicator: Communicator) throws(MPIError) {
        let removed = try withLock { () throws(MPIError) -> (Key?, Int) in
            guard let old = values[communicator.context]?.removeValue(forKey: key.id) else {
                throw MPIError(.invalidArgument, "\(communicator) has no value for \(key)")
            }
            return (keys[key.id], old)
        }
        removed.0?.delete?(communicator, key, removed.1)
    }

    /// Gives `child` (a duplicate of `parent`) what each key's copy rule says.
    func copy(from parent: Communicator, to child: Communicator) {
        let inherited = withLock { values[parent.context, default: [:]].compactMap { entry in keys[entry.key].map { (entry.key, entry.value, $0) } } }
        var copied: [Int: Int] = [:]
        for (id, value, key) in inherited {
            switch key.copy {
            case .none: continue
            case .same: copied[id] = value
            case .callback(let function): copied[id] = function(parent, AttributeKey(id: id), value)
            }
        }
        withLock { values[child.context] = copied }
    }

    /// Deletes every value of a communicator being freed, and its name.
    func forget(_ communicator: Communicator) {
        let held = withLock { () -> [(Int, Int, Key?)] in
            names[communicator.context] = nil
            let held = values.removeValue(forKey: communicator.context) ?? [:]
            return held.sorted { $0.key < $1.key }.map { ($0.key, $0.value, keys[$0.key]) }
        }
        for (id, value, key) in held { key?.delete?(communicator, AttributeKey(id: id), value) }
    }

    func setName(_ name: String, of communicator: Communicator) {
        withLock { names[communicator.context] = name }
    }

    func name(of communicator: Communicator) -> String {
        withLock { names[communicator.context] ?? "" }
    }

    private func withLock<T>(_ body: () throws(MPIError) -> T) throws(MPIError) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    private func withLock<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}
