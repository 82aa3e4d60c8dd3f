// The only C surface of SQLite that distill uses (the teacher call cache). Everything above
// sees Swift types through Sources/Teacher/SQLite.swift.
#ifndef DISTILL_CSQLITE_SHIM_H
#define DISTILL_CSQLITE_SHIM_H

#include <sqlite3.h>

// SQLITE_TRANSIENT is a macro casting -1 to a destructor pointer, which Swift cannot import:
// it tells sqlite3_bind_text to copy the bytes before the call returns.
static inline sqlite3_destructor_type distill_sqlite_transient(void) { return SQLITE_TRANSIENT; }

#endif
