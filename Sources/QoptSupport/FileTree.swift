#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

// Directory listing and removal, in one place for every module (outputs, checkpoints, temporary
// files, tests).

/// The name of a `readdir` entry. Read through a pointer, never by copying `d_name`: the
/// kernel-sized record can be shorter than `dirent`, so copying the whole 256-byte field reads
/// past the allocation (AddressSanitizer reports it).
public func direntName(_ e: UnsafeMutablePointer<dirent>) -> String {
  // safe: d_name is a field of dirent.
  let p = UnsafeRawPointer(e) + MemoryLayout<dirent>.offset(of: \dirent.d_name)!
  return String(cString: p.assumingMemoryBound(to: CChar.self))
}

/// The names in directory `path`, without `.` and `..`, in `readdir` order; empty when it
/// cannot be read.
public func directoryEntries(_ path: String) -> [String] {
  guard let d = opendir(path) else { return [] }
  defer { closedir(d) }
  var out: [String] = []
  while let e = readdir(d) {
    let name = direntName(e)
    if name != "." && name != ".." { out.append(name) }
  }
  return out
}

/// Whether `path` is a directory (not following a final symbolic link).
public func isDirectory(_ path: String) -> Bool {
  var st = stat()
  return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}

/// Deletes a file, a symbolic link (not what it points to) or a directory tree, best effort.
/// Callers pass only paths they made (temporaries, an output being replaced).
public func removeTree(_ path: String) {
  var st = stat()
  guard lstat(path, &st) == 0 else { return }
  if (st.st_mode & S_IFMT) == S_IFDIR {
    for name in directoryEntries(path) { removeTree(path + "/" + name) }
    rmdir(path)
  } else {
    unlink(path)
  }
}
