package service

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger builds the agent's logger from log_level and log_format; it writes to stderr.
func NewLogger(cfg *Config) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(cfg.LogLevel)
	zc.Sampling = nil
	// A Go stack trace under every error line reads as a crash to an operator (a port in
	// use, a broken catalog); a panic's line carries its stack itself (Recover).
	zc.DisableStacktrace = true
	zc.Encoding = cfg.LogFormat
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	if cfg.LogFormat == "console" {
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	}
	return zc.Build()
}
