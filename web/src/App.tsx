import { lazy, Suspense, useEffect } from "react";
import { PageLoading } from "./components/form";
import LoginPage from "./pages/Login";
import { useRouter } from "./lib/router";
import { useSession } from "./lib/session";

// Everything behind the sign-in is loaded on demand: the login page stays small.
const AuthenticatedApp = lazy(() => import("./AuthenticatedApp"));
const ForcedPasswordChange = lazy(() => import("./pages/ForcedPasswordChange"));

export default function App() {
  const { token, mustChangePassword } = useSession();
  const { location, navigate } = useRouter();

  useEffect(() => {
    if (!token && location.pathname !== "/login") {
      const next = location.pathname + (location.search.toString() ? `?${location.search}` : "");
      navigate(next === "/" ? "/login" : `/login?next=${encodeURIComponent(next)}`, { replace: true });
    } else if (token && location.pathname === "/login") {
      navigate("/", { replace: true });
    }
  }, [token, location, navigate]);

  if (!token) return <LoginPage />;
  return (
    <Suspense fallback={<PageLoading />}>{mustChangePassword ? <ForcedPasswordChange /> : <AuthenticatedApp />}</Suspense>
  );
}
