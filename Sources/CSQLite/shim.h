#ifndef CSQLite_SHIM_H
#define CSQLite_SHIM_H
#include <sqlite3.h>

// SQLITE_TRANSIENT is a cast macro Swift cannot import; sqlite3_bind_text needs it to copy the bytes.
static inline sqlite3_destructor_type ferry_sqlite_transient(void) { return SQLITE_TRANSIENT; }
#endif
