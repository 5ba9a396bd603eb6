// CFerrySys is header-only (include/CFerrySys.h); SwiftPM wants one source file in a C target.
#include "CFerrySys.h"
