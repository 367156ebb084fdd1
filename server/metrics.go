package server

import "github.com/mosnlite/mosnlite/service/stats"

// processMetrics are the series about the process itself and its upgrades.
type processMetrics struct {
	live               *stats.Gauge
	generation         *stats.Gauge
	upgrades           *stats.Counter
	upgradesFailed     *stats.Counter
	lastHandoffSeconds *stats.Gauge
	listenersInherited *stats.Gauge
	upgradesReverted   *stats.Counter
	upgrade            *stats.UpgradeMetrics // handoff and migration durations
}

func newProcessMetrics(reg *stats.Registry) *processMetrics {
	return &processMetrics{
		live:               reg.Gauge("server.live", "1 while the process serves"),
		generation:         reg.Gauge("server.hot_restart_generation", "Generation of this process: 1 for a fresh start, +1 per upgrade"),
		upgrades:           reg.Counter("server.upgrades_total", "Upgrades completed (a successor acked the handoff)"),
		upgradesFailed:     reg.Counter("server.upgrades_failed_total", "Upgrades that failed before the successor acked"),
		lastHandoffSeconds: reg.Gauge("server.last_handoff_duration_seconds", "Duration of the last handoff, from the successor's start to its ack"),
		listenersInherited: reg.Gauge("server.listeners_inherited", "Listening sockets this process inherited from its predecessor"),
		upgradesReverted:   reg.Counter("server.upgrades_reverted_total", "Upgrades undone: the successor died within upgrade_watch_period after its ack, and this process served again"),
		upgrade:            stats.NewUpgradeMetrics(reg),
	}
}
