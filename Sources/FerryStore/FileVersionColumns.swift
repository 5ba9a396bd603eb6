import FerrySystem

/// A file's version in the journal is four columns, always in this order: `device, inode, size,
/// mtime_ns` (the schema keeps them as they are; device and inode are stored as their bit pattern).
extension FileVersion {
    /// The four values to bind, in column order.
    var columns: [SQLValue] {
        [.integer(Int64(bitPattern: device)), .integer(Int64(bitPattern: inode)), .integer(size), .integer(mtimeNanoseconds)]
    }
}

extension Row {
    /// The version in the four columns from `first` on.
    func version(at first: Int32) -> FileVersion {
        FileVersion(device: UInt64(bitPattern: int(first)), inode: UInt64(bitPattern: int(first + 1)),
                    size: int(first + 2), mtimeNanoseconds: int(first + 3))
    }
}
