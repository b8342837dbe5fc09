# in.tcpmuxd: `make` builds the shipped binary, Embedded Swift, static
# (build/embedded); `make install` installs it with its manual pages and examples
# (PREFIX and DESTDIR as usual).
#
# Where the toolchain has no Embedded Swift, the fallback is the full-runtime
# static binary, same behaviour, larger and slower to start:
#     make full-runtime && sudo make install BINARY=.build/release/in.tcpmuxd
PREFIX = /usr/local
DESTDIR =
SBINDIR = $(PREFIX)/sbin
MANDIR = $(PREFIX)/share/man
DOCDIR = $(PREFIX)/share/doc/in.tcpmuxd
SWIFT = swift
EMBEDDED = .build/embedded/in.tcpmuxd
FULL_RUNTIME = .build/release/in.tcpmuxd
# What `make install` installs.
BINARY = $(EMBEDDED)

MANPAGES = man/in.tcpmuxd.8 man/tcpmuxd.conf.5
# Installed under DOCDIR by these names.
DOCS = README.md inetd.conf.example tcpmuxd.conf.example \
	xinetd.d/tcpmux systemd/tcpmux.socket systemd/tcpmux@.service

# The Embedded Swift binary; OPTIMIZE and LINK choose variants (build/embedded).
# A toolchain without Embedded Swift stops here with the fallback's commands.
all:
	build/embedded $(EMBEDDED)

embedded: all

# The full-runtime static binary (`swift build -c release`, Package.swift): the
# fallback where Embedded Swift is missing.
full-runtime:
	$(SWIFT) build -c release --product in.tcpmuxd

# Built only if missing: `sudo make install` after `make` builds nothing as root.
$(EMBEDDED):
	build/embedded $(EMBEDDED)

$(FULL_RUNTIME):
	$(SWIFT) build -c release --product in.tcpmuxd

# The pages and examples name /usr/local; they are installed with PREFIX instead.
install: $(BINARY)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(DOCDIR)/xinetd.d $(DESTDIR)$(DOCDIR)/systemd
	install -m 755 $(BINARY) $(DESTDIR)$(SBINDIR)/in.tcpmuxd
	for page in $(MANPAGES); do \
		section=$${page##*.}; \
		sed 's|/usr/local/|$(PREFIX)/|g' $$page > $(DESTDIR)$(MANDIR)/man$$section/$${page#man/} || exit 1; \
		chmod 644 $(DESTDIR)$(MANDIR)/man$$section/$${page#man/}; \
	done
	for doc in $(DOCS); do \
		source=$$doc; [ -e $$source ] || source=examples/$$doc; \
		sed 's|/usr/local/|$(PREFIX)/|g' $$source > $(DESTDIR)$(DOCDIR)/$$doc || exit 1; \
		chmod 644 $(DESTDIR)$(DOCDIR)/$$doc; \
	done

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/in.tcpmuxd
	rm -f $(DESTDIR)$(MANDIR)/man8/in.tcpmuxd.8 $(DESTDIR)$(MANDIR)/man5/tcpmuxd.conf.5
	for doc in $(DOCS); do rm -f $(DESTDIR)$(DOCDIR)/$$doc; done
	-rmdir $(DESTDIR)$(DOCDIR)/xinetd.d $(DESTDIR)$(DOCDIR)/systemd $(DESTDIR)$(DOCDIR)

.PHONY: all embedded full-runtime install uninstall
