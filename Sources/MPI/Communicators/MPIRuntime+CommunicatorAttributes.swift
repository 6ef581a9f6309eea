import Foundation

/// Names, attributes and split by type: what MPI keeps on a communicator
/// besides its ranks (MPI_Comm_set_name, MPI_Comm_create_keyval and the
/// attribute calls, MPI_Comm_split_type).
extension MPIRuntime {
    /// The longest name a communicator takes, in UTF-8 bytes (MPI_MAX_OBJECT_NAME less its terminator).
    public static let maximumNameLength = 127

    public func setName(_ name: String, of communicator: Communicator) throws(MPIError) {
        guard name.utf8.count <= Self.maximumNameLength else {
            return try raise(MPIError(.invalidArgument, "a communicator name of \(name.utf8.count) bytes: at most \(Self.maximumNameLength)"))
        }
        attributes.setName(name, of: communicator)
    }

    /// The name set last ("MPI_COMM_WORLD" and "MPI_COMM_SELF" to begin
    /// with; empty for a communicator never named).
    public func name(of communicator: Communicator) -> String { attributes.name(of: communicator) }

    /// A key for attributes; `copy` says what a duplicate gets, `delete`
    /// is called when a value is deleted, replaced, or its communicator freed.
    public func makeAttributeKey(
        copy: AttributeCopy = .none, delete: (@Sendable (Communicator, AttributeKey, Int) -> Void)? = nil
    ) -> AttributeKey {
        attributes.makeKey(copy: copy, delete: delete)
    }

    public func freeAttributeKey(_ key: AttributeKey) throws(MPIError) {
        do { try attributes.freeKey(key) } catch { try raise(error) as Void }
    }

    public func setAttribute(_ value: Int, for key: AttributeKey, on communicator: Communicator) throws(MPIError) {
        do { try attributes.set(value, for: key, on: communicator) } catch { try raise(error) as Void }
    }

    /// The value of `key` on `communicator`, nil if none is set
    /// (MPI_Comm_get_attr); the predefined keys answer on every communicator.
    public func attribute(_ key: AttributeKey, of communicator: Communicator) -> Int? {
        switch key {
        case .tagUpperBound: return MessageTag.upperBound
        case .universeSize: return size
        case .wallTimeIsGlobal: return 0
        default: return attributes.value(for: key, on: communicator)
        }
    }

    public func deleteAttribute(_ key: AttributeKey, from communicator: Communicator) throws(MPIError) {
        do { try attributes.delete(key, on: communicator) } catch { try raise(error) as Void }
    }

    /// How `split(_:type:key:)` groups ranks.
    public enum SplitType: Sendable {
        /// Ranks that can share memory: those on one host (MPI_COMM_TYPE_SHARED).
        case sharedMemory
    }

    /// The ranks of `communicator` of one kind together, ordered by `key`
    /// then rank (MPI_Comm_split_type); no type gives nil (MPI_UNDEFINED).
    public func split(_ communicator: Communicator, type: SplitType?, key: Int) throws(MPIError) -> Communicator? {
        do throws(MPIError) {
            // The colour: the lowest rank on the same host (equal host
            // identities); a rank that gives no type stays out.
            let identity = type == nil ? -1 : Self.hostIdentity
            let identities = try allgather([identity], on: communicator).map { $0[0] }
            let color = type == nil ? nil : identities.firstIndex(of: identity)
            return try split(communicator, color: color, key: key)
        } catch {
            return try raise(error)
        }
    }

    /// This host as a number: a 64-bit FNV-1a hash of its name and boot
    /// identifier (two containers of one kernel share memory only if the
    /// name is also shared, as ranks of one job on one host do).
    static let hostIdentity: Int = {
        let bootIdentifier = (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? ""
        var hash = StableHash()
        hash.combine(bytes: (hostName() + "|" + bootIdentifier).utf8)
        return hash.value
    }()
}
