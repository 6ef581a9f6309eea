import FabricCore

/// How an accumulate reaches its target's elements, chosen by datatype and
/// operation alone (never by which call was made), so that one word is
/// never under two mechanisms:
/// - 8-byte integers with sum, replace or no-op (and 8-byte compare-and-
///   swap): the fabric's atomics, one per element (sum is a fetch-and-add,
///   no-op a fetch-and-add of 0, replace a compare-and-swap loop);
/// - everything else: a READ-modify-WRITE of the target range while the
///   origin holds the target's accumulate lock (a word of its control
///   block taken with the fabric's compare-and-swap), which makes it
///   atomic per element with respect to every other such accumulate on
///   that rank's window.
/// Both need nothing of the target's processor: the NIC (or the software
/// NIC's progress) serves every step.
enum AccumulateMechanism: Equatable {
    case fabricAtomics
    case lockedReadModifyWrite

    static func choose(_ operation: AccumulateOperation, _ datatype: Datatype, atomics: DeviceCapabilities.AtomicSupport) -> AccumulateMechanism {
        guard atomics != .none, isEightByteInteger(datatype) else { return .lockedReadModifyWrite }
        switch operation {
        case .replace, .noOperation: return .fabricAtomics
        case .reduce(let reduction):
            if case .sum = reduction.kind { return .fabricAtomics }
            return .lockedReadModifyWrite
        }
    }

    /// Compare-and-swap: 8-byte integers through the fabric.
    static func chooseCompareAndSwap(_ datatype: Datatype, atomics: DeviceCapabilities.AtomicSupport) -> AccumulateMechanism {
        atomics != .none && isEightByteInteger(datatype) ? .fabricAtomics : .lockedReadModifyWrite
    }

    static func isEightByteInteger(_ datatype: Datatype) -> Bool {
        guard case .basic(let basic) = datatype.construction, basic.size == 8 else { return false }
        return basic.category == .signedInteger || basic.category == .unsignedInteger
    }
}
