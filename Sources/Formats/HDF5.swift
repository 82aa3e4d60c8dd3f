// HDF5.swift: the one Swift file that talks to the HDF5 C library (module CHDF5).
//
// Everything above this file sees Swift types: `HDF5File`, `HDF5Array`, `HDF5DType`,
// `HDF5AttributeValue`, `HDF5Error`. Checkpoints are built on it.
//
// Paths. Objects are named by slash paths relative to the root group, with or without a
// leading "/": "model/layers/3/self_attn.q_proj.weight". Components may contain dots;
// empty components, "." and ".." are refused. The root group is "" or "/".
// Groups are created on demand when a dataset is written.
//
// Untrusted files (docs/architecture.md, "Files"). Before the first file is touched,
// HDF5's automatic error printing is switched off (every failure becomes an
// `HDF5Error` carrying HDF5's own message) and filter plugins are disabled, so a file
// cannot make the process load a shared library. Traversing an external link (a link
// into another file) fails, both through HDF5 (a link-access callback that refuses)
// and through distill's own path lookup, which names the link. A dataset's declared
// element count is checked for overflow, against the destination buffer and against
// `maxReadBytes` before anything is allocated. A sealed file (HDF5Seal.swift: the files
// distill writes) is checked byte for byte before the library opens it, because the
// library crashes or hangs on damaged metadata. What this cannot defend against is a bug
// inside libhdf5's parser reading an unsealed file: do not open hostile files in a process
// that holds secrets.
//
// Threads. A serial HDF5 build has process-global state and is not thread-safe (Debian's
// "serial" package happens to be built thread-safe; Homebrew's and most others are
// not). Every call into the library made by this file holds one process-wide lock, so
// different `HDF5File`s may be used from different threads; one `HDF5File` is not
// `Sendable` and belongs to one thread (or task) at a time.
//
// On-disk layout written here: contiguous datasets, little-endian IEEE float / two's
// complement integer types, scalar attributes, strings as variable-length UTF-8 (h5py
// reads them as `str`; fixed-length strings would come back as `bytes`). Files are
// created with the library's default (earliest) format bounds, readable by HDF5 1.8+.

import CHDF5
import Foundation
import Platform

// MARK: - Library

package enum HDF5Library {
    /// The version of the HDF5 library linked at run time, e.g. "1.10.8".
    package static var version: String {
        libraryLock.lock()
        defer { libraryLock.unlock() }
        var major: UInt32 = 0
        var minor: UInt32 = 0
        var release: UInt32 = 0
        guard distill_h5_libversion(&major, &minor, &release) >= 0 else { return "unknown" }
        return "\(major).\(minor).\(release)"
    }

    /// Whether the linked library was built thread-safe (Debian's is). distill
    /// serialises its HDF5 calls either way.
    package static var isThreadSafe: Bool {
        libraryLock.lock()
        defer { libraryLock.unlock() }
        var flag: hbool_t = false
        return H5is_library_threadsafe(&flag) >= 0 && flag
    }
}

/// Serialises every call into the (not thread-safe) serial HDF5 library.
private let libraryLock: NSLock = {
    // No atexit handler: HDF5's (H5close) closes what is still open at exit, and after a
    // failed write (a full disk) it dereferences the half-closed file's freed state and
    // crashes (SIGSEGV) after the error has been reported. Files are closed explicitly
    // (`close()`, `deinit`); a file left open at exit is never one a commit renames.
    // H5dont_atexit must come before any other HDF5 call, so it runs where the lock every
    // call takes is created.
    _ = H5dont_atexit()
    return NSLock()
}()

/// Process-wide HDF5 settings, applied once before the first file is created or
/// opened. nil when they took effect.
private let librarySetup: HDF5Error? = {
    // No filter plugins: a file must not be able to load a shared library.
    if H5PLset_loading_state(0) < 0 {
        return HDF5Error(
            kind: .library, call: "H5PLset_loading_state", file: "", hint: "could not disable HDF5 plugin loading",
            library: takeErrorStack())
    }
    return nil
}()

/// Turns off HDF5's printing of its error stack to stderr (failures become Swift
/// errors instead). In a thread-safe build (Debian's "serial" package is one) this
/// setting is per thread, so it is applied on every entry.
private func silenceErrorPrinting() -> HDF5Error? {
    guard H5Eset_auto2(distill_h5_e_default(), nil, nil) >= 0 else {
        return HDF5Error(
            kind: .library, call: "H5Eset_auto2", file: "", hint: "could not turn off HDF5's error printing")
    }
    return nil
}

/// Runs `body` holding the library lock, after the one-time setup.
private func withLibrary<R>(_ body: () throws -> R) throws -> R {
    libraryLock.lock()
    defer { libraryLock.unlock() }
    if let failure = silenceErrorPrinting() ?? librarySetup { throw failure }
    return try body()
}

// MARK: - Errors

/// A failed HDF5 call or a refused file, naming the call, the file, the object and a
/// hint. `library` holds HDF5's own messages (innermost first) when it reported any.
package struct HDF5Error: Error, CustomStringConvertible, Sendable {
    package enum Kind: Sendable, Hashable {
        /// The file (or the directory to create it in) does not exist.
        case fileNotFound
        case permissionDenied
        /// Another process holds the HDF5 file lock, or the file system has no locking.
        case fileLocked
        /// The file has no HDF5 signature.
        case notHDF5File
        /// An HDF5 file that is truncated or whose metadata cannot be read.
        case damaged
        /// A sealed file whose bytes do not match the CRC-32 of its seal (`HDF5Seal`).
        case checksumMismatch
        /// No dataset, group or attribute at that path.
        case notFound
        case alreadyExists
        /// The path goes through a link into another file; those are refused.
        case externalLink
        /// The element type or kind of object is not the one asked for.
        case typeMismatch
        /// The element count does not match the destination.
        case shapeMismatch
        /// The declared size overflows or exceeds `maxReadBytes`.
        case tooLarge
        /// A malformed path or name, or a string that HDF5 cannot hold.
        case invalidArgument
        /// A write to a file opened read-only.
        case readOnly
        /// Anything else HDF5 reported (damaged file, I/O error, ...).
        case library
    }

    package var kind: Kind
    /// The C function that failed, or the distill operation whose check refused.
    package var call: String
    package var file: String
    /// Dataset or group path, when the error concerns one.
    package var object: String?
    package var attribute: String?
    package var hint: String
    package var library: [String]

    package init(
        kind: Kind, call: String, file: String, object: String? = nil, attribute: String? = nil,
        hint: String, library: [String] = []
    ) {
        self.kind = kind
        self.call = call
        self.file = file
        self.object = object
        self.attribute = attribute
        self.hint = hint
        self.library = library
    }

    package var description: String {
        var text = file.isEmpty ? "HDF5" : file
        if let object { text += " at /\(object)" }
        if let attribute { text += ", attribute '\(attribute)'" }
        text += ": \(hint) [\(call)"
        if !library.isEmpty {
            let lines = library.prefix(3).map { $0.count > 200 ? $0.prefix(200) + "..." : Substring($0) }
            text += ": " + lines.joined(separator: "; ")
        }
        return text + "]"
    }
}

/// HDF5's error stack, innermost entry first, as "function: description (minor)"
/// lines; clears the stack. Call it right after the failing call, before any other
/// HDF5 call replaces the stack.
private func takeErrorStack() -> [String] {
    final class Collected {
        var entries: [(function: String, description: String, minor: hid_t)] = []
    }
    let collected = Collected()
    let status = withExtendedLifetime(collected) {
        H5Ewalk2(
            distill_h5_e_default(), H5E_WALK_UPWARD,
            { _, entry, context in
                guard let entry, let context else { return 0 }
                let collected = Unmanaged<Collected>.fromOpaque(context).takeUnretainedValue()
                collected.entries.append(
                    (
                        entry.pointee.func_name.map { String(cString: $0) } ?? "?",
                        entry.pointee.desc.map { String(cString: $0) } ?? "",
                        entry.pointee.min_num
                    ))
                return 0
            }, Unmanaged.passUnretained(collected).toOpaque())
    }
    // Minor messages are looked up after the walk: H5Eget_msg is an API call of its own.
    var lines: [String] = []
    for entry in collected.entries {
        var buffer = [CChar](repeating: 0, count: 160)
        let description = entry.description.split(whereSeparator: \.isNewline).joined(separator: " ")
        var line = "\(entry.function): \(description)"
        if H5Eget_msg(entry.minor, nil, &buffer, buffer.count) > 0 {
            let minor = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !minor.isEmpty, minor != description { line += " (\(minor))" }
        }
        lines.append(line)
    }
    _ = H5Eclear2(distill_h5_e_default())
    if status < 0, lines.isEmpty { lines.append("(HDF5 error stack unreadable)") }
    return lines
}

// MARK: - Element types

/// The element type of a dataset or attribute, independent of byte order.
package enum HDF5DType: Sendable, Hashable, CustomStringConvertible {
    case float(bits: Int)
    case signedInteger(bits: Int)
    case unsignedInteger(bits: Int)
    case string
    /// Any other HDF5 type class (compound, enum (h5py's bool), opaque, ...).
    case other(String)

    package static let float32 = HDF5DType.float(bits: 32)
    package static let float64 = HDF5DType.float(bits: 64)
    package static let int32 = HDF5DType.signedInteger(bits: 32)
    package static let int64 = HDF5DType.signedInteger(bits: 64)
    package static let uint8 = HDF5DType.unsignedInteger(bits: 8)
    package static let uint64 = HDF5DType.unsignedInteger(bits: 64)

    package var description: String {
        switch self {
        case .float(let bits): "float\(bits)"
        case .signedInteger(let bits): "int\(bits)"
        case .unsignedInteger(let bits): "uint\(bits)"
        case .string: "string"
        case .other(let name): name
        }
    }
}

/// Swift types stored as dataset elements: Float, Double, Int32, Int64, UInt8, UInt64.
/// Reading requires the dataset's type to match exactly (byte order may differ).
package protocol HDF5Element: Sendable, Hashable {
    static var hdf5DType: HDF5DType { get }
}

extension Float: HDF5Element { package static var hdf5DType: HDF5DType { .float32 } }
extension Double: HDF5Element { package static var hdf5DType: HDF5DType { .float64 } }
extension Int32: HDF5Element { package static var hdf5DType: HDF5DType { .int32 } }
extension Int64: HDF5Element { package static var hdf5DType: HDF5DType { .int64 } }
extension UInt8: HDF5Element { package static var hdf5DType: HDF5DType { .uint8 } }
extension UInt64: HDF5Element { package static var hdf5DType: HDF5DType { .uint64 } }

/// In-memory and on-disk HDF5 types for an element type.
private func hdf5Types(_ dtype: HDF5DType) -> (memory: hid_t, file: hid_t) {
    switch dtype {
    case .float32: (distill_h5t_native_float(), distill_h5t_ieee_f32le())
    case .float64: (distill_h5t_native_double(), distill_h5t_ieee_f64le())
    case .int32: (distill_h5t_native_int32(), distill_h5t_std_i32le())
    case .int64: (distill_h5t_native_int64(), distill_h5t_std_i64le())
    case .uint8: (distill_h5t_native_uint8(), distill_h5t_std_u8le())
    case .uint64: (distill_h5t_native_uint64(), distill_h5t_std_u64le())
    default: preconditionFailure("no HDF5 element mapping for \(dtype)")
    }
}

/// A dataset's values in row-major (C) order with its shape; `[]` is a scalar.
package struct HDF5Array<Element: HDF5Element>: Sendable, Hashable {
    package var shape: [Int]
    package var values: [Element]

    package init(shape: [Int], values: [Element]) {
        self.shape = shape
        self.values = values
    }
}

/// A scalar attribute. Integers of any width read as `.int`, floats as `.double`,
/// fixed or variable-length strings as `.string`.
package enum HDF5AttributeValue: Sendable, Hashable {
    case int(Int64)
    case double(Double)
    case string(String)
}

package enum HDF5ObjectKind: Sendable, Hashable {
    case group
    case dataset
    /// A link into another file; reading through it is refused.
    case externalLink
    /// A named datatype, a dangling soft link, or a soft link into another file.
    case other
}

// MARK: - File

/// An open HDF5 file. Close it with `close()` to see errors from the final flush;
/// `deinit` closes a file left open and ignores them.
///
/// Not `Sendable`: use one file from one thread at a time (see the top of this file).
package final class HDF5File {
    package let path: String
    package let isWritable: Bool
    /// Reads of datasets declaring more bytes than this are refused before allocating.
    /// Defaults to the memory budget (`MemoryBudget.limit`: physical memory, or less).
    package var maxReadBytes: Int

    /// -1 once closed.
    private var fileID: hid_t
    /// Link access: traversing an external link fails.
    private let linkAccess: hid_t
    /// Link creation: intermediate groups on demand, UTF-8 link names.
    private let linkCreate: hid_t

    private init(path: String, fileID: hid_t, isWritable: Bool, linkAccess: hid_t, linkCreate: hid_t) {
        self.path = path
        self.fileID = fileID
        self.isWritable = isWritable
        self.linkAccess = linkAccess
        self.linkCreate = linkCreate
        self.maxReadBytes = Int(MemoryBudget.limit.bytes)
    }

    deinit {
        libraryLock.lock()
        defer { libraryLock.unlock() }
        _ = silenceErrorPrinting()
        if fileID >= 0 { _ = H5Fclose(fileID) }
        _ = H5Pclose(linkAccess)
        _ = H5Pclose(linkCreate)
    }

    /// Creates (or truncates) the file at `path`, open for writing. `userBlock` bytes
    /// (0, or a power of two >= 512) are left free at the start of the file for
    /// `HDF5Seal.seal` once it is closed.
    package static func create(path: String, userBlock: Int = 0) throws -> HDF5File {
        precondition(
            userBlock == 0 || (userBlock >= 512 && userBlock & (userBlock - 1) == 0),
            "HDF5 user block must be 0 or a power of two >= 512, got \(userBlock)")
        return try withLibrary {
            let lists = try makePropertyLists(path: path)
            var fileCreate = distill_h5_p_default()
            if userBlock > 0 {
                fileCreate = H5Pcreate(distill_h5p_file_create())
                if fileCreate < 0 || H5Pset_userblock(fileCreate, hsize_t(userBlock)) < 0 {
                    let error = HDF5Error(
                        kind: .library, call: "H5Pset_userblock", file: path,
                        hint: "could not reserve a \(userBlock)-byte user block", library: takeErrorStack())
                    if fileCreate >= 0 { _ = H5Pclose(fileCreate) }
                    lists.closeAll()
                    throw error
                }
            }
            let fileID = H5Fcreate(path, distill_h5f_acc_trunc(), fileCreate, lists.fileAccess)
            if userBlock > 0 { _ = H5Pclose(fileCreate) }
            if fileID < 0 {
                let error = openFailure(call: "H5Fcreate", path: path, creating: true)
                lists.closeAll()
                throw error
            }
            _ = H5Pclose(lists.fileAccess)
            return HDF5File(
                path: path, fileID: fileID, isWritable: true, linkAccess: lists.linkAccess,
                linkCreate: lists.linkCreate)
        }
    }

    /// Opens an existing file, read-only unless `writable`. A sealed file (`HDF5Seal`) is
    /// verified byte for byte before the library sees it; a damaged one is refused as
    /// `.damaged`.
    package static func open(path: String, writable: Bool = false) throws -> HDF5File {
        if FileManager.default.fileExists(atPath: path) { try HDF5Seal.verify(path: path) }
        return try withLibrary {
            let files = FileManager.default
            var isDirectory: ObjCBool = false
            guard files.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw HDF5Error(kind: .fileNotFound, call: "open", file: path, hint: "no such file")
            }
            guard !isDirectory.boolValue else {
                throw HDF5Error(kind: .notHDF5File, call: "open", file: path, hint: "is a directory, not an HDF5 file")
            }
            guard files.isReadableFile(atPath: path) else {
                throw HDF5Error(kind: .permissionDenied, call: "open", file: path, hint: "file is not readable")
            }
            if writable, !files.isWritableFile(atPath: path) {
                throw HDF5Error(kind: .permissionDenied, call: "open", file: path, hint: "file is not writable")
            }
            let signature = H5Fis_hdf5(path)
            if signature < 0 { throw openFailure(call: "H5Fis_hdf5", path: path, creating: false) }
            if signature == 0 {
                throw HDF5Error(
                    kind: .notHDF5File, call: "H5Fis_hdf5", file: path,
                    hint: "not an HDF5 file (no HDF5 signature found)")
            }
            let lists = try makePropertyLists(path: path)
            let flags = writable ? distill_h5f_acc_rdwr() : distill_h5f_acc_rdonly()
            let fileID = H5Fopen(path, flags, lists.fileAccess)
            if fileID < 0 {
                let error = openFailure(call: "H5Fopen", path: path, creating: false)
                lists.closeAll()
                throw error
            }
            _ = H5Pclose(lists.fileAccess)
            return HDF5File(
                path: path, fileID: fileID, isWritable: writable, linkAccess: lists.linkAccess,
                linkCreate: lists.linkCreate)
        }
    }

    /// Flushes and closes the file. Idempotent. Later use is a programming error.
    package func close() throws {
        try withLibrary {
            guard fileID >= 0 else { return }
            let status = H5Fclose(fileID)
            fileID = -1
            if status < 0 {
                throw failure(
                    .library, "H5Fclose", hint: "closing (and flushing) the file failed; it may be incomplete")
            }
        }
    }

    /// Writes HDF5's buffers to the operating system (not an fsync).
    package func flush() throws {
        try withLibrary {
            try checkOpen()
            if H5Fflush(fileID, H5F_SCOPE_GLOBAL) < 0 {
                throw failure(.library, "H5Fflush", hint: "flushing the file failed")
            }
        }
    }

    // MARK: Datasets

    /// Writes a new dataset at `path` (creating missing groups) with row-major
    /// `values` of `shape` (`[]` for a scalar). Refuses to overwrite.
    package func write<T: HDF5Element>(_ values: UnsafeBufferPointer<T>, shape: [Int], to path: String) throws {
        precondition(shape.allSatisfy { $0 >= 0 }, "HDF5 dataset \(path): negative dimension in shape \(shape)")
        let count = shape.reduce(1) { product, dimension in
            let (result, overflow) = product.multipliedReportingOverflow(by: dimension)
            precondition(!overflow, "HDF5 dataset \(path): element count of shape \(shape) overflows")
            return result
        }
        precondition(
            count == values.count,
            "HDF5 dataset \(path): shape \(shape) holds \(count) elements but \(values.count) were given")
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: "write")
            let name = parts.joined(separator: "/")
            guard !parts.isEmpty else {
                throw failure(
                    .invalidArgument, "write", object: name, hint: "a dataset needs a name; the root is a group")
            }
            try checkWritable(call: "write", object: name)
            try checkFree(parts, call: "write")

            let space: hid_t
            if shape.isEmpty {
                space = H5Screate(H5S_SCALAR)
            } else {
                let dims = shape.map { hsize_t($0) }
                space = H5Screate_simple(Int32(clamping: dims.count), dims, nil)
            }
            if space < 0 {
                throw failure(
                    .invalidArgument, shape.isEmpty ? "H5Screate" : "H5Screate_simple", object: name,
                    hint: "HDF5 cannot hold shape \(shape) (rank at most 32)")
            }
            defer { _ = H5Sclose(space) }

            let types = hdf5Types(T.hdf5DType)
            let dataset = H5Dcreate2(
                fileID, absolute(parts), types.file, space, linkCreate, distill_h5_p_default(),
                distill_h5_p_default())
            if dataset < 0 {
                throw failure(.library, "H5Dcreate2", object: name, hint: "could not create the dataset")
            }
            defer { _ = H5Dclose(dataset) }
            guard count > 0, let base = values.baseAddress else { return }
            let status = H5Dwrite(
                dataset, types.memory, distill_h5_s_all(), distill_h5_s_all(), distill_h5_p_default(), base)
            if status < 0 {
                throw failure(.library, "H5Dwrite", object: name, hint: "writing \(count) elements failed")
            }
        }
    }

    /// Array form of `write(_:shape:to:)`.
    package func write<T: HDF5Element>(_ values: [T], shape: [Int], to path: String) throws {
        try values.withUnsafeBufferPointer { try write($0, shape: shape, to: path) }
    }

    /// Writes a byte blob as a one-dimensional uint8 dataset.
    package func writeBytes(_ bytes: [UInt8], to path: String) throws {
        try write(bytes, shape: [bytes.count], to: path)
    }

    /// Reads a dataset whose element type is exactly `T`'s.
    package func read<T: HDF5Element>(_ type: T.Type = T.self, from path: String) throws -> HDF5Array<T> {
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: "read")
            let name = parts.joined(separator: "/")
            let dataset = try openDataset(parts, call: "read")
            defer { _ = H5Dclose(dataset) }
            let (shape, count) = try checkedExtent(of: dataset, element: T.self, object: name)
            let values = try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
                try readAll(dataset, into: buffer, object: name)
                initialized = count
            }
            return HDF5Array(shape: shape, values: values)
        }
    }

    /// Reads a dataset of element type `T` into `buffer`, which must hold exactly its
    /// element count. Returns the dataset's shape.
    @discardableResult
    package func read<T: HDF5Element>(from path: String, into buffer: UnsafeMutableBufferPointer<T>) throws -> [Int] {
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: "read")
            let name = parts.joined(separator: "/")
            let dataset = try openDataset(parts, call: "read")
            defer { _ = H5Dclose(dataset) }
            let (shape, count) = try checkedExtent(of: dataset, element: T.self, object: name)
            guard count == buffer.count else {
                throw failure(
                    .shapeMismatch, "read", object: name,
                    hint: "dataset has shape \(shape) (\(count) elements) but the destination holds \(buffer.count)")
            }
            try readAll(dataset, into: buffer, object: name)
            return shape
        }
    }

    /// Reads a uint8 dataset of any shape as bytes.
    package func readBytes(_ path: String) throws -> [UInt8] {
        try read(UInt8.self, from: path).values
    }

    /// The shape of the dataset at `path` (`[]` for a scalar).
    package func shape(of path: String) throws -> [Int] {
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: "shape")
            let dataset = try openDataset(parts, call: "shape")
            defer { _ = H5Dclose(dataset) }
            return try extent(of: dataset, object: parts.joined(separator: "/")).shape
        }
    }

    /// The element type of the dataset at `path`.
    package func dtype(of path: String) throws -> HDF5DType {
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: "dtype")
            let dataset = try openDataset(parts, call: "dtype")
            defer { _ = H5Dclose(dataset) }
            return try datasetDType(dataset, object: parts.joined(separator: "/"))
        }
    }

    /// Every dataset reachable through hard links, as sorted paths without a leading
    /// slash. Soft and external links are not followed.
    package func datasetNames() throws -> [String] {
        try withLibrary {
            try checkOpen()
            return try listDatasets()
        }
    }

    // MARK: Groups and existence

    /// Creates the group at `path` and any missing parents; an existing group is fine.
    package func createGroup(_ path: String) throws {
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: "createGroup")
            let name = parts.joined(separator: "/")
            guard !parts.isEmpty else { return }
            if try lookup(parts, call: "createGroup") == .found, try kind(ofExisting: parts) == .group { return }
            try checkWritable(call: "createGroup", object: name)
            try checkFree(parts, call: "createGroup")
            let group = H5Gcreate2(
                fileID, absolute(parts), linkCreate, distill_h5_p_default(), distill_h5_p_default())
            if group < 0 { throw failure(.library, "H5Gcreate2", object: name, hint: "could not create the group") }
            _ = H5Gclose(group)
        }
    }

    /// What is at `path`, or nil if nothing is. An external link is reported as such
    /// without being followed.
    package func objectKind(at path: String) throws -> HDF5ObjectKind? {
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: "objectKind")
            switch try lookup(parts, call: "objectKind") {
            case .found: return try kind(ofExisting: parts)
            case .external(let prefix): return prefix == absolute(parts) ? .externalLink : nil
            case .missing, .throughNonGroup: return nil
            }
        }
    }

    /// Whether anything (group, dataset, link) exists at `path`.
    package func exists(_ path: String) throws -> Bool {
        try objectKind(at: path) != nil
    }

    // MARK: Attributes

    /// Sets a scalar attribute on the group or dataset at `path` (default: the root),
    /// replacing an existing one of the same name.
    package func setAttribute(_ name: String, _ value: HDF5AttributeValue, at path: String = "/") throws {
        try withAttributeOwner(name, at: path, call: "setAttribute", writing: true) { owner, object in
            try deleteIfPresent(owner, name, object: object, hint: "could not replace it")
            let space = H5Screate(H5S_SCALAR)
            if space < 0 { throw failure(.library, "H5Screate", object: object, attribute: name, hint: "scalar space") }
            defer { _ = H5Sclose(space) }

            switch value {
            case .int(var number):
                try writeAttribute(
                    owner, name, fileType: distill_h5t_std_i64le(), memoryType: distill_h5t_native_int64(),
                    space: space, object: object, bytes: &number)
            case .double(var number):
                try writeAttribute(
                    owner, name, fileType: distill_h5t_ieee_f64le(), memoryType: distill_h5t_native_double(),
                    space: space, object: object, bytes: &number)
            case .string(let text):
                guard !text.utf8.contains(0) else {
                    throw failure(
                        .invalidArgument, "setAttribute", object: object, attribute: name,
                        hint: "string contains a NUL byte, which HDF5 strings cannot hold")
                }
                let type = try variableStringType(object: object, attribute: name)
                defer { _ = H5Tclose(type) }
                try text.withCString { characters in
                    var pointer: UnsafePointer<CChar>? = characters
                    try writeAttribute(
                        owner, name, fileType: type, memoryType: type, space: space, object: object,
                        bytes: &pointer)
                }
            }
        }
    }

    /// Removes the attribute `name` of the group or dataset at `path` (a missing one is not an
    /// error).
    package func deleteAttribute(_ name: String, at path: String = "/") throws {
        try withAttributeOwner(name, at: path, call: "deleteAttribute", writing: true) { owner, object in
            try deleteIfPresent(owner, name, object: object, hint: "could not delete it")
        }
    }

    /// Reads the scalar attribute `name` of the group or dataset at `path`.
    package func attribute(_ name: String, at path: String = "/") throws -> HDF5AttributeValue {
        try withAttributeOwner(name, at: path, call: "attribute", writing: false) { owner, object in
            try readAttribute(owner, name, object: object)
        }
    }

    /// Runs `body` on the open object at `path` that holds (or will hold) attribute `name`,
    /// after the checks every attribute call makes.
    private func withAttributeOwner<T>(
        _ name: String, at path: String, call: String, writing: Bool, _ body: (hid_t, String) throws -> T
    ) throws -> T {
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: call)
            let object = parts.joined(separator: "/")
            try checkAttributeName(name, object: object)
            if writing { try checkWritable(call: call, object: object) }
            let owner = try openObject(parts, call: call, what: "object")
            defer { _ = H5Oclose(owner) }
            return try body(owner, object)
        }
    }

    private func deleteIfPresent(_ owner: hid_t, _ name: String, object: String, hint: String) throws {
        let exists = H5Aexists(owner, name)
        if exists < 0 {
            throw failure(.library, "H5Aexists", object: object, attribute: name, hint: "lookup failed")
        }
        if exists > 0, H5Adelete(owner, name) < 0 {
            throw failure(.library, "H5Adelete", object: object, attribute: name, hint: hint)
        }
    }

    /// Names of the attributes of the group or dataset at `path`, sorted.
    package func attributeNames(at path: String = "/") throws -> [String] {
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: "attributeNames")
            let owner = try openObject(parts, call: "attributeNames", what: "object")
            defer { _ = H5Oclose(owner) }
            return try listAttributes(owner, object: parts.joined(separator: "/"))
        }
    }

    package func hasAttribute(_ name: String, at path: String = "/") throws -> Bool {
        try withLibrary {
            try checkOpen()
            let parts = try components(of: path, call: "hasAttribute")
            let object = parts.joined(separator: "/")
            try checkAttributeName(name, object: object)
            let owner = try openObject(parts, call: "hasAttribute", what: "object")
            defer { _ = H5Oclose(owner) }
            let exists = H5Aexists(owner, name)
            if exists < 0 {
                throw failure(.library, "H5Aexists", object: object, attribute: name, hint: "lookup failed")
            }
            return exists > 0
        }
    }

    package func stringAttribute(_ name: String, at path: String = "/") throws -> String {
        guard case .string(let text) = try attribute(name, at: path) else {
            throw attributeTypeError(name, at: path, expected: "a string")
        }
        return text
    }

    package func intAttribute(_ name: String, at path: String = "/") throws -> Int64 {
        guard case .int(let number) = try attribute(name, at: path) else {
            throw attributeTypeError(name, at: path, expected: "an integer")
        }
        return number
    }

    /// Accepts integer attributes too (converted exactly up to 2^53).
    package func doubleAttribute(_ name: String, at path: String = "/") throws -> Double {
        switch try attribute(name, at: path) {
        case .double(let number): return number
        case .int(let number): return Double(number)
        case .string: throw attributeTypeError(name, at: path, expected: "a number")
        }
    }
}

@available(*, unavailable, message: "HDF5File belongs to one thread at a time")
extension HDF5File: Sendable {}

// MARK: - Implementation (every method below runs with the library lock held)

extension HDF5File {
    private struct PropertyLists {
        var fileAccess: hid_t
        var linkAccess: hid_t
        var linkCreate: hid_t

        func closeAll() {
            _ = H5Pclose(fileAccess)
            _ = H5Pclose(linkAccess)
            _ = H5Pclose(linkCreate)
        }
    }

    private static func makePropertyLists(path: String) throws -> PropertyLists {
        func fail(_ call: String, _ hint: String) -> HDF5Error {
            HDF5Error(kind: .library, call: call, file: path, hint: hint, library: takeErrorStack())
        }
        let fileAccess = H5Pcreate(distill_h5p_file_access())
        if fileAccess < 0 { throw fail("H5Pcreate", "could not create a file access property list") }
        // Closing the file closes every object still open in it, so the file is
        // complete on disk after H5Fclose.
        if H5Pset_fclose_degree(fileAccess, H5F_CLOSE_STRONG) < 0 {
            let error = fail("H5Pset_fclose_degree", "could not configure file closing")
            _ = H5Pclose(fileAccess)
            throw error
        }
        // No HDF5 file locks: HDF5 opens files without O_CLOEXEC and flocks them, so a child
        // process started while a file is open inherits the lock and the next open of that
        // file fails (errno 11). distill serialises writers itself (the run-directory lock,
        // uniquely named temporary files), so the library's lock only adds that hazard.
        if H5Pset_file_locking(fileAccess, false, true) < 0 {
            let error = fail("H5Pset_file_locking", "could not turn off HDF5 file locking")
            _ = H5Pclose(fileAccess)
            throw error
        }
        let linkAccess = H5Pcreate(distill_h5p_link_access())
        if linkAccess < 0 {
            let error = fail("H5Pcreate", "could not create a link access property list")
            _ = H5Pclose(fileAccess)
            throw error
        }
        // Called before HDF5 opens the target file of an external link; failing
        // makes the traversal fail.
        if H5Pset_elink_cb(linkAccess, { _, _, _, _, _, _, _ in -1 }, nil) < 0 {
            let error = fail("H5Pset_elink_cb", "could not disable external links")
            _ = H5Pclose(fileAccess)
            _ = H5Pclose(linkAccess)
            throw error
        }
        let linkCreate = H5Pcreate(distill_h5p_link_create())
        if linkCreate < 0 {
            let error = fail("H5Pcreate", "could not create a link creation property list")
            _ = H5Pclose(fileAccess)
            _ = H5Pclose(linkAccess)
            throw error
        }
        let lists = PropertyLists(fileAccess: fileAccess, linkAccess: linkAccess, linkCreate: linkCreate)
        if H5Pset_create_intermediate_group(linkCreate, 1) < 0 {
            let error = fail("H5Pset_create_intermediate_group", "could not configure group creation")
            lists.closeAll()
            throw error
        }
        if H5Pset_char_encoding(linkCreate, H5T_CSET_UTF8) < 0 {
            let error = fail("H5Pset_char_encoding", "could not configure UTF-8 link names")
            lists.closeAll()
            throw error
        }
        return lists
    }

    /// Explains a failed H5Fcreate / H5Fopen / H5Fis_hdf5 from HDF5's messages.
    private static func openFailure(call: String, path: String, creating: Bool) -> HDF5Error {
        let stack = takeErrorStack()
        let text = stack.joined(separator: "\n")
        let (kind, hint): (HDF5Error.Kind, String)
        if text.contains("unable to lock file") {
            (kind, hint) = (
                .fileLocked,
                "file is locked (open for writing elsewhere?) or the file system does not support "
                    + "locking (HDF5_USE_FILE_LOCKING=FALSE turns HDF5's locking off)"
            )
        } else if text.contains("Permission denied") {
            (kind, hint) = (.permissionDenied, creating ? "file is not writable" : "file is not readable")
        } else if text.contains("already open") || text.contains("file close degree") {
            (kind, hint) = (.library, "the file is already open in this process; close it first")
        } else if creating, text.contains("No such file") {
            (kind, hint) = (.fileNotFound, "cannot create the file: its directory does not exist")
        } else if text.contains("No such file") {
            (kind, hint) = (.fileNotFound, "no such file")
        } else if creating {
            (kind, hint) = (.library, "could not create the file")
        } else if text.contains("truncated file") {
            (kind, hint) = (.damaged, "file is truncated (an interrupted write or copy?)")
        } else {
            (kind, hint) = (.damaged, "could not open the file; it may be truncated or damaged")
        }
        return HDF5Error(kind: kind, call: call, file: path, hint: hint, library: stack)
    }

    /// An error for a failed call, carrying HDF5's error stack. A failure inside
    /// external-link traversal (reached through a soft link, which distill's own lookup
    /// does not resolve) is reported as `.externalLink` whatever the caller expected.
    private func failure(
        _ kind: HDF5Error.Kind, _ call: String, object: String? = nil, attribute: String? = nil, hint: String
    ) -> HDF5Error {
        let stack = takeErrorStack()
        if stack.contains(where: { $0.contains("extern_traverse") }) {
            return HDF5Error(
                kind: .externalLink, call: call, file: path, object: object, attribute: attribute,
                hint: "the path runs through an external link (a link into another file); external links are refused",
                library: stack)
        }
        // A write the operating system refused for lack of room: say so up front, as HDF5's
        // own lines (where errno is) may be cut short in the message.
        var hint = hint
        if stack.contains(where: { $0.contains("errno = 28,") }) {
            hint += ": no space left on the device; free some space and retry"
        } else if stack.contains(where: { $0.contains("errno = 27,") }) {
            hint += ": file too large for the file size limit (ulimit -f) or the file system; raise it and retry"
        }
        return HDF5Error(
            kind: kind, call: call, file: path, object: object, attribute: attribute, hint: hint, library: stack)
    }

    private func checkOpen() throws {
        precondition(fileID >= 0, "HDF5File \(path) used after close()")
    }

    private func checkWritable(call: String, object: String) throws {
        guard isWritable else {
            throw failure(.readOnly, call, object: object, hint: "file was opened read-only")
        }
    }

    private func checkAttributeName(_ name: String, object: String) throws {
        guard !name.isEmpty, !name.utf8.contains(0) else {
            throw failure(.invalidArgument, "attribute", object: object, hint: "invalid attribute name '\(name)'")
        }
    }

    /// Splits a slash path into components, refusing empty, "." and ".." components.
    private func components(of path: String, call: String) throws -> [String] {
        var trimmed = Substring(path)
        if trimmed.hasPrefix("/") { trimmed = trimmed.dropFirst() }
        if trimmed.isEmpty { return [] }
        let parts = trimmed.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for part in parts where part.isEmpty || part == "." || part == ".." || part.utf8.contains(0) {
            throw failure(
                .invalidArgument, call, object: path,
                hint: "invalid path: components must be non-empty and not '.' or '..'")
        }
        return parts
    }

    private func absolute(_ parts: [String]) -> String {
        "/" + parts.joined(separator: "/")
    }

    private enum Lookup: Equatable {
        case found
        /// The first prefix (absolute) that does not exist.
        case missing(String)
        /// The first prefix that is an external link.
        case external(String)
        /// The first prefix that exists but is not a group while more components follow.
        case throughNonGroup(String)
    }

    /// Walks `parts` one link at a time without following external links.
    private func lookup(_ parts: [String], call: String) throws -> Lookup {
        var prefix = ""
        for (index, part) in parts.enumerated() {
            prefix += "/" + part
            let exists = H5Lexists(fileID, prefix, linkAccess)
            if exists < 0 {
                throw failure(.library, "H5Lexists", object: String(prefix.dropFirst()), hint: "link lookup failed")
            }
            if exists == 0 { return .missing(prefix) }
            var info = H5L_info_t()
            if H5Lget_info(fileID, prefix, &info, linkAccess) < 0 {
                throw failure(.library, "H5Lget_info", object: String(prefix.dropFirst()), hint: "link lookup failed")
            }
            if info.type == H5L_TYPE_EXTERNAL { return .external(prefix) }
            if index < parts.count - 1 {
                let object = H5Oopen(fileID, prefix, linkAccess)
                if object < 0 {
                    // A soft link that cannot be resolved: into another file, or dangling.
                    let stack = takeErrorStack()
                    return stack.contains { $0.contains("extern_traverse") } ? .external(prefix) : .missing(prefix)
                }
                let type = H5Iget_type(object)
                _ = H5Oclose(object)
                if type != H5I_GROUP { return .throughNonGroup(prefix) }
            }
        }
        return .found
    }

    /// Refuses to create at `parts` unless nothing is there and no parent is an
    /// external link or a non-group.
    private func checkFree(_ parts: [String], call: String) throws {
        let name = parts.joined(separator: "/")
        switch try lookup(parts, call: call) {
        case .missing: return
        case .found:
            throw failure(.alreadyExists, call, object: name, hint: "an object already exists at this path")
        case .external(let prefix):
            throw failure(.externalLink, call, object: name, hint: "\(prefix) is an external link; they are refused")
        case .throughNonGroup(let prefix):
            throw failure(.invalidArgument, call, object: name, hint: "\(prefix) is a dataset, not a group")
        }
    }

    /// Kind of the object at an existing, non-external path.
    private func kind(ofExisting parts: [String]) throws -> HDF5ObjectKind {
        if parts.isEmpty { return .group }
        let object = H5Oopen(fileID, absolute(parts), linkAccess)
        if object < 0 {
            _ = takeErrorStack()
            return .other
        }
        defer { _ = H5Oclose(object) }
        switch H5Iget_type(object) {
        case H5I_GROUP: return .group
        case H5I_DATASET: return .dataset
        default: return .other
        }
    }

    /// Opens the group or dataset at `parts`; `what` names it in errors.
    private func openObject(_ parts: [String], call: String, what: String) throws -> hid_t {
        let name = parts.joined(separator: "/")
        switch try lookup(parts, call: call) {
        case .found: break
        case .missing(let prefix):
            var hint = "\(what) not found: \(name)"
            if prefix != absolute(parts) { hint += " (\(prefix.dropFirst()) does not exist)" }
            hint += "; " + availableSummary()
            throw failure(.notFound, call, object: name, hint: hint)
        case .external(let prefix):
            throw failure(
                .externalLink, call, object: name,
                hint: "\(prefix.dropFirst()) is an external link to another file; external links are refused")
        case .throughNonGroup(let prefix):
            throw failure(
                .notFound, call, object: name,
                hint: "\(what) not found: \(prefix.dropFirst()) is a dataset, not a group; " + availableSummary())
        }
        let object = H5Oopen(fileID, parts.isEmpty ? "/" : absolute(parts), linkAccess)
        if object < 0 {
            throw failure(.library, "H5Oopen", object: name, hint: "could not open the \(what) (dangling soft link?)")
        }
        return object
    }

    private func openDataset(_ parts: [String], call: String) throws -> hid_t {
        let name = parts.joined(separator: "/")
        let object = try openObject(parts, call: call, what: "dataset")
        if H5Iget_type(object) != H5I_DATASET {
            _ = H5Oclose(object)
            throw failure(.typeMismatch, call, object: name, hint: "is a group, not a dataset; " + availableSummary())
        }
        return object
    }

    /// "available datasets: a, b, ..." for not-found hints (at most 20 names).
    private func availableSummary() -> String {
        guard let names = try? listDatasets() else { return "could not list the file's datasets" }
        if names.isEmpty { return "the file has no datasets" }
        var text = "available datasets: " + names.prefix(20).joined(separator: ", ")
        if names.count > 20 { text += ", ... (\(names.count) in all)" }
        return text
    }

    private func listDatasets() throws -> [String] {
        final class Visit {
            let linkAccess: hid_t
            var names: [String] = []
            var failedName: String?
            init(linkAccess: hid_t) { self.linkAccess = linkAccess }
        }
        let visit = Visit(linkAccess: linkAccess)
        let status = withExtendedLifetime(visit) {
            H5Lvisit(
                fileID, H5_INDEX_NAME, H5_ITER_INC,
                { group, name, info, context in
                    guard let name, let info, let context else { return -1 }
                    let visit = Unmanaged<Visit>.fromOpaque(context).takeUnretainedValue()
                    guard info.pointee.type == H5L_TYPE_HARD else { return 0 }
                    let object = H5Oopen(group, name, visit.linkAccess)
                    if object < 0 {
                        visit.failedName = String(cString: name)
                        return -1
                    }
                    if H5Iget_type(object) == H5I_DATASET { visit.names.append(String(cString: name)) }
                    _ = H5Oclose(object)
                    return 0
                }, Unmanaged.passUnretained(visit).toOpaque())
        }
        if status < 0 {
            throw failure(.library, "H5Lvisit", object: visit.failedName, hint: "listing the file's datasets failed")
        }
        return visit.names.sorted()
    }

    private func listAttributes(_ owner: hid_t, object: String) throws -> [String] {
        final class Names { var names: [String] = [] }
        let names = Names()
        let status = withExtendedLifetime(names) {
            H5Aiterate2(
                owner, H5_INDEX_NAME, H5_ITER_INC, nil,
                { _, name, _, context in
                    guard let name, let context else { return -1 }
                    Unmanaged<Names>.fromOpaque(context).takeUnretainedValue().names.append(String(cString: name))
                    return 0
                }, Unmanaged.passUnretained(names).toOpaque())
        }
        if status < 0 { throw failure(.library, "H5Aiterate2", object: object, hint: "listing attributes failed") }
        return names.names.sorted()
    }

    private func datatype(of type: hid_t, object: String, attribute: String? = nil) throws -> HDF5DType {
        let size = H5Tget_size(type)
        if size == 0 { throw failure(.library, "H5Tget_size", object: object, attribute: attribute, hint: "bad type") }
        let bits = size * 8
        switch H5Tget_class(type) {
        case H5T_FLOAT: return .float(bits: bits)
        case H5T_INTEGER:
            let sign = H5Tget_sign(type)
            if sign == H5T_SGN_ERROR {
                throw failure(.library, "H5Tget_sign", object: object, attribute: attribute, hint: "bad integer type")
            }
            return sign == H5T_SGN_NONE ? .unsignedInteger(bits: bits) : .signedInteger(bits: bits)
        case H5T_STRING: return .string
        case H5T_COMPOUND: return .other("compound")
        case H5T_ENUM: return .other("enum")
        case H5T_OPAQUE: return .other("opaque")
        case H5T_BITFIELD: return .other("bitfield")
        case H5T_REFERENCE: return .other("reference")
        case H5T_VLEN: return .other("vlen")
        case H5T_ARRAY: return .other("array")
        case H5T_TIME: return .other("time")
        default: throw failure(.library, "H5Tget_class", object: object, attribute: attribute, hint: "bad type")
        }
    }

    private func datasetDType(_ dataset: hid_t, object: String) throws -> HDF5DType {
        let type = H5Dget_type(dataset)
        if type < 0 { throw failure(.library, "H5Dget_type", object: object, hint: "could not read the element type") }
        defer { _ = H5Tclose(type) }
        return try datatype(of: type, object: object)
    }

    /// Shape and element count of a dataset's dataspace, refusing overflow.
    private func extent(of dataset: hid_t, object: String) throws -> (shape: [Int], count: Int) {
        let space = H5Dget_space(dataset)
        if space < 0 { throw failure(.library, "H5Dget_space", object: object, hint: "could not read the shape") }
        defer { _ = H5Sclose(space) }
        switch H5Sget_simple_extent_type(space) {
        case H5S_SCALAR:
            return ([], 1)
        case H5S_SIMPLE:
            let rank = H5Sget_simple_extent_ndims(space)
            if rank < 0 || rank > 32 {
                throw failure(.library, "H5Sget_simple_extent_ndims", object: object, hint: "bad rank \(rank)")
            }
            var dims = [hsize_t](repeating: 0, count: Int(rank))
            if H5Sget_simple_extent_dims(space, &dims, nil) < 0 {
                throw failure(.library, "H5Sget_simple_extent_dims", object: object, hint: "could not read the shape")
            }
            var count = 1
            var overflow = false
            for dim in dims {
                guard let dimension = Int(exactly: dim) else {
                    overflow = true
                    break
                }
                let product = count.multipliedReportingOverflow(by: dimension)
                count = product.partialValue
                overflow = overflow || product.overflow
            }
            if overflow {
                throw failure(
                    .tooLarge, "read", object: object, hint: "declared shape \(dims) overflows the element count")
            }
            return (dims.map { Int($0) }, count)
        case H5S_NULL:
            throw failure(.typeMismatch, "read", object: object, hint: "dataset has a null dataspace (no data)")
        default:
            throw failure(.library, "H5Sget_simple_extent_type", object: object, hint: "bad dataspace")
        }
    }

    /// Extent of a dataset that is about to be read as `T`: type must match and the
    /// byte size must be within `maxReadBytes`.
    private func checkedExtent<T: HDF5Element>(of dataset: hid_t, element: T.Type, object: String) throws -> (
        shape: [Int], count: Int
    ) {
        let actual = try datasetDType(dataset, object: object)
        guard actual == T.hdf5DType else {
            throw failure(
                .typeMismatch, "read", object: object, hint: "dataset holds \(actual), expected \(T.hdf5DType)")
        }
        let (shape, count) = try extent(of: dataset, object: object)
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !overflow, bytes <= maxReadBytes else {
            throw failure(
                .tooLarge, "read", object: object,
                hint: "dataset declares shape \(shape) (\(count) elements of \(T.hdf5DType)), more than "
                    + "maxReadBytes = \(maxReadBytes) bytes; refusing to allocate")
        }
        return (shape, count)
    }

    private func readAll<T: HDF5Element>(
        _ dataset: hid_t, into buffer: UnsafeMutableBufferPointer<T>, object: String
    ) throws {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return }
        let status = H5Dread(
            dataset, hdf5Types(T.hdf5DType).memory, distill_h5_s_all(), distill_h5_s_all(),
            distill_h5_p_default(), base)
        if status < 0 {
            let error = failure(.damaged, "H5Dread", object: object, hint: "reading the data failed")
            if error.library.contains(where: { $0.contains("filter") }) {
                throw HDF5Error(
                    kind: .typeMismatch, call: error.call, file: error.file, object: error.object,
                    hint: "the dataset is compressed with a filter this HDF5 library does not build in "
                        + "(plugins are disabled); rewrite it uncompressed or with gzip",
                    library: error.library)
            }
            throw HDF5Error(
                kind: .damaged, call: error.call, file: error.file, object: error.object,
                hint: "reading the data failed (truncated or damaged file?)", library: error.library)
        }
    }

    private func variableStringType(object: String, attribute: String) throws -> hid_t {
        let type = H5Tcopy(distill_h5t_c_s1())
        if type < 0 { throw failure(.library, "H5Tcopy", object: object, attribute: attribute, hint: "string type") }
        if H5Tset_size(type, distill_h5_t_variable()) < 0 {
            let error = failure(.library, "H5Tset_size", object: object, attribute: attribute, hint: "string type")
            _ = H5Tclose(type)
            throw error
        }
        if H5Tset_cset(type, H5T_CSET_UTF8) < 0 {
            let error = failure(.library, "H5Tset_cset", object: object, attribute: attribute, hint: "string type")
            _ = H5Tclose(type)
            throw error
        }
        return type
    }

    private func writeAttribute(
        _ owner: hid_t, _ name: String, fileType: hid_t, memoryType: hid_t, space: hid_t, object: String,
        bytes value: UnsafeRawPointer
    ) throws {
        let attribute = H5Acreate2(owner, name, fileType, space, distill_h5_p_default(), distill_h5_p_default())
        if attribute < 0 {
            throw failure(
                .library, "H5Acreate2", object: object, attribute: name, hint: "could not create the attribute")
        }
        defer { _ = H5Aclose(attribute) }
        if H5Awrite(attribute, memoryType, value) < 0 {
            throw failure(.library, "H5Awrite", object: object, attribute: name, hint: "could not write the attribute")
        }
    }

    private func readAttribute(_ owner: hid_t, _ name: String, object: String) throws -> HDF5AttributeValue {
        let exists = H5Aexists(owner, name)
        if exists < 0 { throw failure(.library, "H5Aexists", object: object, attribute: name, hint: "lookup failed") }
        if exists == 0 {
            let names = (try? listAttributes(owner, object: object)) ?? []
            let available = names.isEmpty ? "it has no attributes" : "available: " + names.joined(separator: ", ")
            throw failure(
                .notFound, "attribute", object: object, attribute: name, hint: "attribute not found; \(available)")
        }
        let attribute = H5Aopen(owner, name, distill_h5_p_default())
        if attribute < 0 {
            throw failure(.library, "H5Aopen", object: object, attribute: name, hint: "could not open it")
        }
        defer { _ = H5Aclose(attribute) }
        let space = H5Aget_space(attribute)
        if space < 0 { throw failure(.library, "H5Aget_space", object: object, attribute: name, hint: "no dataspace") }
        defer { _ = H5Sclose(space) }
        let count = H5Sget_simple_extent_npoints(space)
        if count < 0 {
            throw failure(.library, "H5Sget_simple_extent_npoints", object: object, attribute: name, hint: "bad shape")
        }
        guard count == 1 else {
            throw failure(
                .typeMismatch, "attribute", object: object, attribute: name,
                hint: "holds \(count) values; only scalar attributes are supported")
        }
        let type = H5Aget_type(attribute)
        if type < 0 { throw failure(.library, "H5Aget_type", object: object, attribute: name, hint: "no type") }
        defer { _ = H5Tclose(type) }

        switch try datatype(of: type, object: object, attribute: name) {
        case .signedInteger, .unsignedInteger:
            var number: Int64 = 0
            if H5Aread(attribute, distill_h5t_native_int64(), &number) < 0 {
                throw failure(.library, "H5Aread", object: object, attribute: name, hint: "could not read it")
            }
            return .int(number)
        case .float:
            var number = 0.0
            if H5Aread(attribute, distill_h5t_native_double(), &number) < 0 {
                throw failure(.library, "H5Aread", object: object, attribute: name, hint: "could not read it")
            }
            return .double(number)
        case .string:
            return .string(try readStringAttribute(attribute, type: type, object: object, name: name))
        case let other:
            throw failure(
                .typeMismatch, "attribute", object: object, attribute: name,
                hint: "holds \(other); only integer, float and string attributes are supported")
        }
    }

    private func readStringAttribute(_ attribute: hid_t, type: hid_t, object: String, name: String) throws -> String {
        let variable = H5Tis_variable_str(type)
        if variable < 0 {
            throw failure(.library, "H5Tis_variable_str", object: object, attribute: name, hint: "bad type")
        }
        let memoryType = H5Tcopy(type)  // same size, padding and character set, native order
        if memoryType < 0 { throw failure(.library, "H5Tcopy", object: object, attribute: name, hint: "string type") }
        defer { _ = H5Tclose(memoryType) }
        var bytes: [UInt8]
        if variable > 0 {
            var pointer: UnsafeMutablePointer<CChar>? = nil
            if H5Aread(attribute, memoryType, &pointer) < 0 {
                throw failure(.library, "H5Aread", object: object, attribute: name, hint: "could not read the string")
            }
            guard let pointer else { return "" }
            bytes = Array(UnsafeBufferPointer(start: pointer, count: strlen(pointer)).map { UInt8(bitPattern: $0) })
            if H5free_memory(pointer) < 0 {
                throw failure(.library, "H5free_memory", object: object, attribute: name, hint: "freeing the string")
            }
        } else {
            let size = H5Tget_size(type)
            guard size > 0, size <= maxReadBytes else {
                throw failure(.tooLarge, "attribute", object: object, attribute: name, hint: "string of \(size) bytes")
            }
            bytes = [UInt8](repeating: 0, count: size)
            if H5Aread(attribute, memoryType, &bytes) < 0 {
                throw failure(.library, "H5Aread", object: object, attribute: name, hint: "could not read the string")
            }
            if let end = bytes.firstIndex(of: 0) { bytes.removeSubrange(end...) }
            if H5Tget_strpad(type) == H5T_STR_SPACEPAD {
                while bytes.last == UInt8(ascii: " ") { bytes.removeLast() }
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw failure(
                .typeMismatch, "attribute", object: object, attribute: name, hint: "string is not valid UTF-8")
        }
        return text
    }

    private func attributeTypeError(_ name: String, at path: String, expected: String) -> HDF5Error {
        HDF5Error(
            kind: .typeMismatch, call: "attribute", file: self.path, object: path, attribute: name,
            hint: "attribute is not \(expected)")
    }
}
