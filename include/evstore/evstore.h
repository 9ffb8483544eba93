/*
 * evstore — an embedded event store and event-sourcing engine.
 *
 * The umbrella header: include this one.
 */
#ifndef EVSTORE_EVSTORE_H
#define EVSTORE_EVSTORE_H

#include "evstore/version.h"
#include "evstore/errors.h"
#include "evstore/types.h"
#include "evstore/store.h"
#include "evstore/append.h"
#include "evstore/read.h"
#include "evstore/subscription.h"
#include "evstore/projection.h"
/* The client of evstored: declarations only; its functions live in the
 * separate library libevstore_client (see client.h). */
#include "evstore/client.h"

#endif /* EVSTORE_EVSTORE_H */
