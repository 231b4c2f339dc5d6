import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Ctrl-C (SIGINT) and SIGTERM during a run: print what was kept and how to resume, then exit
/// with 128 + the signal (130 for Ctrl-C, 143 for SIGTERM) without writing anything else.
///
/// The handler must be async-signal-safe, so it formats nothing: the message is prepared in
/// advance (`setMessage`, called whenever what is kept changes) and published as one pointer;
/// the handler loads the pointer, `write`s the bytes to stderr and calls `_exit`. Outputs are
/// only ever renamed into place once complete (`AtomicFileWriter`, `AtomicDirectory`), so
/// exiting at any point leaves no partial output under the output's name; a temporary a run
/// left behind is removed by the next write of the same output.
enum Interruption {
  /// The current message's address (0: none): a buffer holding its byte count (an `Int`) and
  /// then its bytes.
  /// Replaced buffers are never freed: the handler may be reading one, and a run replaces its
  /// message once per finished block.
  private static let message = Atomic<UInt>(0)

  /// Sets the message and installs the handler for SIGINT and SIGTERM.
  static func install(message text: String) {
    setMessage(text)
    var action = sigaction()
    action.__sigaction_handler.sa_handler = { signal in Interruption.handle(signal) }
    sigemptyset(&action.sa_mask)
    // A second Ctrl-C while the message is written waits for the exit.
    sigaddset(&action.sa_mask, SIGINT)
    sigaddset(&action.sa_mask, SIGTERM)
    action.sa_flags = 0
    sigaction(SIGINT, &action, nil)
    sigaction(SIGTERM, &action, nil)
    // A parent may have started qopt with the signals blocked (the mask is inherited): the
    // handler only helps if they arrive.
    var unblock = sigset_t()
    sigemptyset(&unblock)
    sigaddset(&unblock, SIGINT)
    sigaddset(&unblock, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
  }

  /// Replaces what an interrupt prints.
  static func setMessage(_ text: String) {
    let bytes = Array(text.utf8)
    let stride = MemoryLayout<Int>.size
    let buffer = UnsafeMutableRawPointer.allocate(
      byteCount: stride + bytes.count, alignment: MemoryLayout<Int>.alignment)
    buffer.storeBytes(of: bytes.count, as: Int.self)
    if !bytes.isEmpty {
      bytes.withUnsafeBytes {
        (buffer + stride).copyMemory(from: $0.baseAddress!, byteCount: $0.count)  // safe: non-empty
      }
    }
    message.store(UInt(bitPattern: buffer), ordering: .releasing)
  }

  /// The handler: only `write` and `_exit`, both async-signal-safe.
  private static func handle(_ signal: Int32) {
    if let p = UnsafeMutableRawPointer(bitPattern: message.load(ordering: .acquiring)) {
      let count = p.load(as: Int.self)
      var done = 0
      while done < count {
        let n = write(2, p + MemoryLayout<Int>.size + done, count - done)
        if n <= 0 { break }
        done += n
      }
    }
    _exit(128 + signal)
  }
}
