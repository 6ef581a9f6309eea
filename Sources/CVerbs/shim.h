// The one place the verbs and rdma_cm headers are included (see docs/architecture.md).
#ifndef CVERBS_SHIM_H
#define CVERBS_SHIM_H
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#endif
