import CSQLite
import Foundation
import Platform

// The only file that calls SQLite. Every status is checked where it happens and reported
// with the call, the database path and SQLite's own message.

/// A SQLite failure: what was attempted, on which file, and SQLite's message.
package struct SQLiteError: Error, CustomStringConvertible, Sendable {
    package var path: String
    package var operation: String
    package var message: String

    package var description: String {
        "\(path): SQLite \(operation) failed: \(message); check that the directory is writable and the file is a distill "
            + "call cache (delete it to start an empty cache: it only saves teacher calls)"
    }
}

/// One connection. Not thread-safe by itself; `CallCache` serialises access.
final class SQLiteConnection {
    let path: String
    private var db: OpaquePointer?

    init(path: String) throws {
        self.path = path
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close(db)
            db = nil
            throw SQLiteError(path: path, operation: "open", message: message)
        }
        sqlite3_busy_timeout(db, 10_000)
    }

    deinit { sqlite3_close(db) }

    private func error(_ operation: String) -> SQLiteError {
        SQLiteError(path: path, operation: operation, message: String(cString: sqlite3_errmsg(db)))
    }

    /// Runs statements that return no rows.
    func execute(_ sql: String) throws {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw error("exec \(sql.prefix(40))") }
    }

    /// Runs one statement with text/real parameters and returns its rows as strings (NULL as nil).
    @discardableResult
    func query(_ sql: String, _ parameters: [SQLiteValue] = []) throws -> [[String?]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else { throw error("prepare") }
        defer { sqlite3_finalize(statement) }
        for (i, p) in parameters.enumerated() {
            let rc: Int32
            switch p {
            case .text(let s): rc = sqlite3_bind_text(statement, Int32(i + 1), s, -1, distill_sqlite_transient())
            case .real(let d): rc = sqlite3_bind_double(statement, Int32(i + 1), d)
            }
            guard rc == SQLITE_OK else { throw error("bind") }
        }
        var rows: [[String?]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return rows }
            guard rc == SQLITE_ROW else { throw error("step") }
            rows.append(
                (0..<sqlite3_column_count(statement)).map { c in
                    sqlite3_column_text(statement, c).map { String(cString: $0) }
                })
        }
    }
}

enum SQLiteValue {
    case text(String)
    case real(Double)
}

extension SQLiteError: UserFacingError {
    package var errorKind: ErrorKind { .io }
}
