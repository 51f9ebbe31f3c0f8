/* The DPDK API surface ferrolb binds. Keep it small: ferrolb uses EAL,
 * ethdev, mbuf/mempool, lcores, cycles and vdev hot-plug. */
#include <rte_config.h>
#include <rte_common.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_version.h>
#include <rte_malloc.h>
#include <rte_prefetch.h>
#include <rte_pause.h>

/* rte_errno is a thread-local macro in C: expose it as a function. */
int ferrolb_rte_errno(void);
/* RTE_VERSION is a macro: expose the string. */
const char *ferrolb_rte_version(void);
