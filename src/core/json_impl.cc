// The one translation unit that compiles Boost.JSON's header-only implementation for the
// whole program.
#include <boost/json/src.hpp>
