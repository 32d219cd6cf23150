package powerdns

import "testing"

func testOwnership(t *testing.T, m mariadb)        {}
func testDeleteEveryTable(t *testing.T, m mariadb) {}
func testApply(t *testing.T, m mariadb)            {}
func testApplyInconsistent(t *testing.T, m mariadb) {}
func testBatchesAndRetry(t *testing.T, m mariadb)  {}
