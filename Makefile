.PHONY: test

# Integration prerequisites are required here: a missing program fails its
# test (see internal/testenv) instead of skipping it.
test:
	SMTPLOG_REQUIRE_INTEGRATION=1 go test -count=1 -timeout 20m ./...
