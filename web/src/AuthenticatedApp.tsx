import { lazy, Suspense, useEffect, type ComponentType } from "react";
import { PageLoading } from "./components/form";
import { Shell } from "./components/Shell";
import { ToastProvider, useToast } from "./components/toasts";
import { forgetUsers, rememberUser } from "./lib/hooks";
import { LiveProvider, useChanges } from "./lib/live";
import { matchPath, useRouter } from "./lib/router";
import { isAdmin, useMe, useSession } from "./lib/session";
import type { Pirep, User } from "./lib/types";

// One chunk per screen.
const Dashboard = lazy(() => import("./pages/Dashboard"));
const PirepList = lazy(() => import("./pages/PirepList"));
const PirepSubmit = lazy(() => import("./pages/PirepSubmit"));
const PirepDetail = lazy(() => import("./pages/PirepDetail"));
const Tenants = lazy(() => import("./pages/Tenants"));
const Users = lazy(() => import("./pages/Users"));
const UserDetail = lazy(() => import("./pages/UserDetail"));
const ChangePassword = lazy(() => import("./pages/ChangePassword"));
const NotFound = lazy(() => import("./pages/NotFound"));

const routes: [string, ComponentType<{ params: Record<string, string> }>][] = [
  ["/", Dashboard],
  ["/pireps", PirepList],
  ["/pireps/new", PirepSubmit],
  ["/pireps/:id", PirepDetail],
  ["/tenants", Tenants],
  ["/users", Users],
  ["/users/:id", UserDetail],
  ["/account/password", ChangePassword],
];

function Routes() {
  const { location } = useRouter();
  for (const [pattern, Page] of routes) {
    const params = matchPath(pattern, location.pathname);
    if (params) return <Page key={pattern + JSON.stringify(params)} params={params} />;
  }
  return <NotFound />;
}

/** App-wide reactions to change messages: the signed-in user's figures, names, review toasts. */
function LiveGlue() {
  const me = useMe();
  const { setUser } = useSession();
  const toast = useToast();
  useEffect(() => forgetUsers, []);
  useChanges((message) => {
    if (message.entity === "user") {
      const user = { ...(message.data as User), id: message.id };
      rememberUser(user);
      if (message.id === me.id) setUser(user);
      return;
    }
    if (message.entity === "pirep" && isAdmin(me)) {
      const p = message.data as Pirep;
      if (p.status !== "pending") {
        toast.dismissKey(message.id); // reviewed (here or elsewhere): nothing left to do
        return;
      }
      if (message.event !== "PirepSubmitted" || p.pilot_id === me.id) return;
      toast.push({
        key: message.id,
        title: "New PIREP to review",
        body: `${p.flight_number} · ${p.departure} → ${p.arrival}`,
        href: `/pireps/${encodeURIComponent(message.id)}`,
        linkLabel: "Review it",
      });
    }
  });
  return null;
}

export default function AuthenticatedApp() {
  const { token, endSession } = useSession();
  return (
    <LiveProvider token={token!} onUnauthorized={() => endSession("Your session has ended. Please sign in again.")}>
      <ToastProvider>
        <LiveGlue />
        <Shell>
          <Suspense fallback={<PageLoading />}>
            <Routes />
          </Suspense>
        </Shell>
      </ToastProvider>
    </LiveProvider>
  );
}
