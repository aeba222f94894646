import { Disclosure, DisclosureButton, DisclosurePanel, Menu, MenuButton, MenuItem, MenuItems } from "@headlessui/react";
import { useEffect, useRef, type ReactNode } from "react";
import { useLive, type LiveStatus } from "../lib/live";
import { roleLabel } from "../lib/format";
import { Link, useRouter } from "../lib/router";
import { isAdmin, useMe, useSession } from "../lib/session";
import { cx } from "./form";

interface NavItem {
  to: string;
  label: string;
}

function navItems(admin: boolean): NavItem[] {
  const items: NavItem[] = [
    { to: "/", label: "Dashboard" },
    { to: "/pireps", label: "PIREPs" },
    { to: "/users", label: admin ? "Users" : "Pilots" },
    { to: "/tenants", label: "Airlines" },
  ];
  return items;
}

function isActive(pathname: string, to: string) {
  return to === "/" ? pathname === "/" : pathname === to || pathname.startsWith(`${to}/`);
}

const liveText: Record<LiveStatus, string> = {
  live: "Live",
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

export function ConnectionIndicator() {
  const { status } = useLive();
  const dot = { live: "bg-emerald-500", connecting: "bg-amber-400 animate-pulse", reconnecting: "bg-amber-400 animate-pulse", offline: "bg-red-500" }[status];
  const title =
    status === "live"
      ? "Live updates are on: lists change as soon as anything happens."
      : "Live updates are paused; they resume, with nothing missed, once the connection is back.";
  return (
    <span role="status" aria-live="polite" title={title} data-testid="connection" data-state={status} className="inline-flex items-center gap-1.5 rounded-full bg-white/10 px-2 py-1 text-xs font-medium text-white">
      <span aria-hidden="true" className={cx("size-2 rounded-full", dot)} />
      <span>{liveText[status]}</span>
    </span>
  );
}

export function Shell({ children }: { children: ReactNode }) {
  const me = useMe();
  const { logout } = useSession();
  const { location } = useRouter();
  const items = navItems(isAdmin(me));
  const mainRef = useRef<HTMLElement>(null);
  const firstPath = useRef(true);

  // After a client-side navigation, move focus to the new page's heading (as a page load
  // would), so keyboard and screen-reader users start at the top of the new screen.
  useEffect(() => {
    if (firstPath.current) {
      firstPath.current = false;
      return;
    }
    let tries = 0;
    const focusHeading = () => {
      const heading = mainRef.current?.querySelector<HTMLElement>("h1");
      if (heading) heading.focus({ preventScroll: true });
      else if (tries++ < 20) setTimeout(focusHeading, 50); // the screen's chunk is loading
      else mainRef.current?.focus({ preventScroll: true });
    };
    focusHeading();
  }, [location.pathname]);

  return (
    <div className="min-h-dvh">
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:rounded focus:bg-white focus:px-3 focus:py-2">
        Skip to content
      </a>
      <Disclosure as="header" className="bg-sky-900 text-white shadow">
        {({ close }) => (
          <>
            <div className="mx-auto flex h-14 max-w-6xl items-center gap-3 px-3 sm:px-6">
              <DisclosureButton className="-ml-1 inline-flex size-10 items-center justify-center rounded-md hover:bg-white/10 md:hidden" aria-label="Navigation">
                <svg aria-hidden="true" viewBox="0 0 24 24" className="size-6" fill="none" stroke="currentColor" strokeWidth="2">
                  <path d="M4 6h16M4 12h16M4 18h16" />
                </svg>
              </DisclosureButton>
              <Link to="/" className="flex items-center gap-2 text-lg font-bold tracking-tight">
                <span aria-hidden="true">✈</span> Albatross
              </Link>
              <nav aria-label="Main" className="ml-4 hidden gap-1 md:flex">
                {items.map((item) => (
                  <Link
                    key={item.to}
                    to={item.to}
                    aria-current={isActive(location.pathname, item.to) ? "page" : undefined}
                    className={cx("rounded-md px-3 py-2 text-sm font-medium hover:bg-white/10", isActive(location.pathname, item.to) && "bg-white/15")}
                  >
                    {item.label}
                  </Link>
                ))}
              </nav>
              <div className="ml-auto flex items-center gap-2">
                <ConnectionIndicator />
                <Menu as="div" className="relative">
                  <MenuButton className="flex items-center gap-2 rounded-md px-2 py-1.5 text-sm font-medium hover:bg-white/10 data-focus:outline-2 data-focus:outline-white" aria-label={`Account menu for ${me.display_name}`}>
                    <span aria-hidden="true" className="flex size-8 items-center justify-center rounded-full bg-sky-600 text-sm font-semibold uppercase">
                      {me.display_name.slice(0, 1)}
                    </span>
                    <span className="hidden max-w-40 truncate lg:inline">{me.display_name}</span>
                  </MenuButton>
                  <MenuItems anchor="bottom end" className="z-50 mt-1 w-60 rounded-md bg-white py-1 text-slate-800 shadow-lg ring-1 ring-slate-200 focus:outline-none">
                    <div className="border-b border-slate-100 px-3 py-2 text-sm">
                      <p className="truncate font-semibold">{me.display_name}</p>
                      <p className="truncate text-slate-500">{roleLabel(me.role)}</p>
                    </div>
                    <MenuItem>
                      <Link to={`/users/${encodeURIComponent(me.id)}`} className="block px-3 py-2 text-sm data-focus:bg-slate-100">
                        My profile and API keys
                      </Link>
                    </MenuItem>
                    <MenuItem>
                      <Link to="/account/password" className="block px-3 py-2 text-sm data-focus:bg-slate-100">
                        Change password
                      </Link>
                    </MenuItem>
                    <MenuItem>
                      <button type="button" onClick={() => void logout()} className="block w-full px-3 py-2 text-left text-sm data-focus:bg-slate-100">
                        Sign out
                      </button>
                    </MenuItem>
                  </MenuItems>
                </Menu>
              </div>
            </div>
            <DisclosurePanel as="nav" aria-label="Main" className="border-t border-white/10 px-3 pb-3 md:hidden">
              {items.map((item) => (
                <Link
                  key={item.to}
                  to={item.to}
                  onClick={() => close()}
                  aria-current={isActive(location.pathname, item.to) ? "page" : undefined}
                  className={cx("block rounded-md px-3 py-2 text-base font-medium hover:bg-white/10", isActive(location.pathname, item.to) && "bg-white/15")}
                >
                  {item.label}
                </Link>
              ))}
            </DisclosurePanel>
          </>
        )}
      </Disclosure>
      <main id="main" ref={mainRef} tabIndex={-1} className="mx-auto max-w-6xl px-3 py-6 focus:outline-none sm:px-6 sm:py-8">
        {children}
      </main>
    </div>
  );
}
